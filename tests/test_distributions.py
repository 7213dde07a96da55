"""keras_mrnn._distributions (the Normal, Bernoulli and KL that the package
uses off TensorFlow) against SciPy and float64 NumPy formulas on whichever
backend runs, and against TFP on TensorFlow."""

import doctest

import keras
import numpy as np
import pytest
from keras import ops
from scipy import special, stats

from keras_mrnn import _backend
from keras_mrnn import _distributions as dist


BACKEND = keras.backend.backend()


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_normal_log_prob_and_mean_match_scipy_with_broadcasting():
    rng = _rng(0)
    # The shapes the Markov LSTM's predictive switch uses: means
    # (batch, K, F), scales (K, F), values (batch, 1, F).
    loc = rng.normal(size=(5, 3, 4)).astype("float32")
    scale = rng.uniform(0.05, 3.0, size=(3, 4)).astype("float32")
    x = rng.normal(size=(5, 1, 4)).astype("float32") * 2
    normal = dist.Normal(loc, scale)
    want = stats.norm.logpdf(x.astype("float64"), loc, scale)
    got = _np(normal.log_prob(x))
    assert got.shape == (5, 3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        _np(normal.mean()), np.broadcast_to(loc, (5, 3, 4)), rtol=0)
    np.testing.assert_array_equal(_np(normal.loc), loc)
    np.testing.assert_array_equal(_np(normal.scale), scale)


def test_normal_log_prob_far_in_the_tail_is_exact():
    # 1e4 standard deviations out: the square of the standardized value,
    # not a difference of large squares.
    normal = dist.Normal(np.float32(1.0), np.float32(1e-4))
    got = _np(normal.log_prob(np.float32(2.0)))
    x, loc, scale = np.float32(2.0), np.float32(1.0), np.float32(1e-4)
    want = stats.norm.logpdf(float(x), float(loc), float(scale))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_normal_of_python_numbers_and_integers_is_float():
    normal = dist.Normal(0, 2)
    assert keras.backend.standardize_dtype(normal.loc.dtype) == "float32"
    np.testing.assert_allclose(
        _np(normal.log_prob(1)), stats.norm.logpdf(1.0, 0.0, 2.0), rtol=1e-6)


@pytest.mark.parametrize("binary", [True, False])
def test_bernoulli_log_prob_matches_the_cross_entropy(binary):
    rng = _rng(1)
    logits = rng.normal(scale=4.0, size=(6, 5)).astype("float32")
    x = rng.uniform(size=(6, 5)).astype("float32")
    if binary:
        x = (x > 0.5).astype("float32")
    p = special.expit(logits.astype("float64"))
    want = x * np.log(p) + (1.0 - x) * np.log1p(-p)
    coin = dist.Bernoulli(logits=logits, dtype="float32")
    np.testing.assert_allclose(
        _np(coin.log_prob(x)), want, rtol=1e-6, atol=1e-6)
    mean = coin.mean()
    assert keras.backend.standardize_dtype(mean.dtype) == "float32"
    np.testing.assert_allclose(_np(mean), p, rtol=1e-6, atol=1e-7)
    if binary:
        # Outcomes' probabilities sum to one.
        total = np.exp(_np(coin.log_prob(np.zeros_like(x)))) + np.exp(
            _np(coin.log_prob(np.ones_like(x))))
        np.testing.assert_allclose(total, 1.0, rtol=1e-6)


def test_bernoulli_log_prob_is_finite_at_saturated_logits():
    # sigmoid(+-200) is 0 or 1 in float32: log(sigmoid) would be -inf, and
    # exp(200) overflows. The exact values are -|l| and ~0 (log1p(-exp(-|l|))).
    logits = np.array([200.0, -200.0, 200.0, -200.0, 30.0], "float32")
    x = np.array([0.0, 1.0, 1.0, 0.0, 0.25], "float32")
    got = _np(dist.Bernoulli(logits=logits).log_prob(x))
    l64, x64 = logits.astype("float64"), x.astype("float64")
    want = x64 * l64 - np.logaddexp(0.0, l64)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_kl_divergence_matches_the_textbook_closed_form():
    rng = _rng(2)
    m1, m0 = rng.normal(size=(2, 7, 3)).astype("float32")
    s1, s0 = rng.uniform(0.05, 4.0, size=(2, 7, 3)).astype("float32")
    m1_, m0_, s1_, s0_ = (a.astype("float64") for a in (m1, m0, s1, s0))
    want = (np.log(s0_ / s1_) + (s1_**2 + (m1_ - m0_) ** 2) / (2 * s0_**2)
            - 0.5)
    got = _np(dist.kl_divergence(dist.Normal(m1, s1), dist.Normal(m0, s0)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(got >= 0)


def test_kl_divergence_of_nearly_equal_scales_keeps_its_digits():
    # KL(N(0, s) || N(0, s (1 + d))) ~ d^2 for small d: the textbook form
    # subtracts numbers near 1/2 and loses them in float32.
    s = np.float32(0.7)
    d = np.float32(1e-3)
    s0 = np.float32(s * (1 + d))
    s_, s0_ = float(s), float(s0)
    want = np.log(s0_ / s_) + s_**2 / (2 * s0_**2) - 0.5
    got = _np(dist.kl_divergence(dist.Normal(0.0, s), dist.Normal(0.0, s0)))
    np.testing.assert_allclose(got, want, rtol=1e-3)
    assert 0 < float(got) < 2e-6


def test_kl_divergence_of_a_distribution_with_itself_is_zero():
    rng = _rng(3)
    loc = rng.normal(size=(4,)).astype("float32")
    scale = rng.uniform(0.1, 2.0, size=(4,)).astype("float32")
    kl = _np(dist.kl_divergence(dist.Normal(loc, scale),
                                dist.Normal(loc, scale)))
    np.testing.assert_array_equal(kl, np.zeros(4))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="`logits`"):
        dist.Bernoulli()
    normal = dist.Normal(0.0, 1.0)
    with pytest.raises(ValueError, match="`p` must be a Normal"):
        dist.kl_divergence(dist.Bernoulli(logits=0.0), normal)
    with pytest.raises(ValueError, match="`q` must be a Normal"):
        dist.kl_divergence(normal, "normal")


def test_backend_gives_this_module_off_tensorflow_and_tfp_on_it():
    tfd = _backend.distributions()
    if BACKEND == "tensorflow":
        assert tfd.__name__.startswith("tensorflow_probability")
    else:
        assert tfd is dist
    # The interface the package uses, whichever module it is.
    normal = tfd.Normal(np.zeros((2, 3), "float32"),
                        np.ones((3,), "float32"))
    np.testing.assert_allclose(
        _np(normal.log_prob(np.zeros((2, 1), "float32"))),
        np.full((2, 3), stats.norm.logpdf(0.0)), rtol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow",
                    reason="TFP's TensorFlow distributions take TF tensors")
def test_matches_tfp_on_tensorflow():
    tfd = pytest.importorskip("tensorflow_probability").distributions
    rng = _rng(4)
    m1, m0, x = rng.normal(size=(3, 6, 4)).astype("float32")
    s1, s0 = rng.uniform(0.01, 3.0, size=(2, 6, 4)).astype("float32")
    logits = rng.normal(scale=10.0, size=(6, 4)).astype("float32")
    u = rng.uniform(size=(6, 4)).astype("float32")
    pairs = [
        (dist.Normal(m1, s1).log_prob(x), tfd.Normal(m1, s1).log_prob(x)),
        (dist.kl_divergence(dist.Normal(m1, s1), dist.Normal(m0, s0)),
         tfd.kl_divergence(tfd.Normal(m1, s1), tfd.Normal(m0, s0))),
        (dist.Bernoulli(logits=logits, dtype="float32").log_prob(u),
         tfd.Bernoulli(logits=logits, dtype="float32").log_prob(u)),
        (dist.Bernoulli(logits=logits, dtype="float32").mean(),
         tfd.Bernoulli(logits=logits, dtype="float32").mean()),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(_np(ours), _np(theirs), rtol=1e-6,
                                   atol=1e-6)


def test_docstring_examples_run():
    # tests/test_docstrings.py collects the public modules' examples.
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(dist, globs={"keras": keras, "np": np})
             if t.examples]
    assert len(tests) >= 3
    report = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
