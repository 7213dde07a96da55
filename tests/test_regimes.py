"""Tests of the regime-switching process, its Bayes filter and the NMI score
(keras_mrnn.datasets.MarkovSwitchingAR, normalized_mutual_information).

Everything here is NumPy in float64: the checks are against closed forms
(written out below, with the normal log-density of _helpers.py) and
large-sample statistics with stated tolerances.
"""

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from _helpers import normal_log_pdf
from keras_mrnn import datasets

# Run on every backend by .ci/run (see conftest.py).

PROCESS = datasets.MarkovSwitchingAR()


# ------------------------------------------------------------------ sample
def test_sample_shapes_dtypes_and_seeds():
    x, regimes = PROCESS.sample(20, 30, seed=0)
    assert x.shape == (20, 30, 1) and x.dtype == np.float32
    assert regimes.shape == (20, 30) and regimes.dtype == np.int32
    assert set(np.unique(regimes)) <= {0, 1, 2}
    again = PROCESS.sample(20, 30, seed=0)
    np.testing.assert_array_equal(x, again[0])
    np.testing.assert_array_equal(regimes, again[1])
    assert not np.array_equal(x, PROCESS.sample(20, 30, seed=1)[0])


def test_sample_follows_the_chain_and_the_regimes_ar1_laws():
    x, s = PROCESS.sample(2000, 200, seed=3)
    x = x[..., 0].astype("float64")
    # Regime changes: 1 - stay = 0.05 per step; 398,000 transitions give a
    # standard error of ~3.5e-4.
    changes = np.mean(s[:, 1:] != s[:, :-1])
    assert abs(changes - 0.05) < 0.002
    # Regimes are used equally (uniform start, symmetric chain).
    np.testing.assert_allclose(np.bincount(s.ravel()) / s.size, 1 / 3,
                               atol=0.02)
    # Per regime, least squares of x_t on x_{t-1} recovers the AR(1):
    # slope = coefficient, intercept = mean * (1 - coefficient), residual
    # scale = scale (>100,000 points each: errors ~1e-2 at most).
    for k in range(3):
        stay = (s[:, 1:] == k) & (s[:, :-1] == k)
        prev, now = x[:, :-1][stay], x[:, 1:][stay]
        slope, intercept = np.polyfit(prev, now, 1)
        residual = now - (slope * prev + intercept)
        assert abs(slope - PROCESS.coefficients[k]) < 0.02
        assert abs(intercept - PROCESS.means[k] * (
            1 - PROCESS.coefficients[k])) < 0.02
        assert abs(residual.std() - PROCESS.scales[k]) < 0.02


# ------------------------------------------------------------------ filter
def test_filter_with_independent_regimes_is_one_step_bayes_rule():
    # Rows of P all uniform (stay = 1/K): the regimes are i.i.d., so
    # p(s_t = k | x_0..t) ∝ p(x_t | s_t = k, x_{t-1}), a closed form.
    process = datasets.MarkovSwitchingAR(
        means=(0.0, 1.0), coefficients=(0.5, -0.3), scales=(0.5, 1.5),
        stay_probability=0.5,
    )
    x, _ = process.sample(5, 40, seed=2)
    x = x[..., 0].astype("float64")
    expected = np.empty(x.shape + (2,))
    for k in range(2):
        mean, phi, scale = (process.means[k], process.coefficients[k],
                            process.scales[k])
        expected[:, 0, k] = normal_log_pdf(
            x[:, 0], mean, scale / np.sqrt(1 - phi ** 2))
        expected[:, 1:, k] = normal_log_pdf(
            x[:, 1:], mean + phi * (x[:, :-1] - mean), scale)
    expected = np.exp(expected)
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(process.filter(x), expected, rtol=1e-10,
                               atol=1e-12)


def test_filter_with_a_fixed_regime_accumulates_the_evidence():
    # stay = 1: the regime never changes, so the posterior at t is Bayes'
    # rule on the whole past: log-odds = sum of log-likelihood ratios.
    process = datasets.MarkovSwitchingAR(
        means=(0.0, 0.5), coefficients=(0.2, 0.2), scales=(1.0, 1.0),
        stay_probability=1.0,
    )
    x, _ = process.sample(4, 25, seed=5)
    x = x[..., 0].astype("float64")
    log_lik = np.stack([
        np.concatenate([
            normal_log_pdf(x[:, :1], m, 1.0 / np.sqrt(1 - 0.04)),
            normal_log_pdf(x[:, 1:], m + 0.2 * (x[:, :-1] - m), 1.0),
        ], axis=1)
        for m in (0.0, 0.5)
    ], axis=-1)
    log_odds = np.cumsum(log_lik[..., 1] - log_lik[..., 0], axis=1)
    np.testing.assert_allclose(process.filter(x)[..., 1],
                               1 / (1 + np.exp(-log_odds)), rtol=1e-9)


def test_filter_and_prediction_beat_simple_rules_on_the_default_process():
    x, s = PROCESS.sample(500, 200, seed=7)
    posterior = PROCESS.filter(x)
    np.testing.assert_allclose(posterior.sum(-1), 1.0, rtol=1e-12)
    accuracy = np.mean(posterior.argmax(-1) == s)
    # The nearest regime mean, a rule that ignores dynamics and the past.
    nearest = np.abs(x - PROCESS.means).argmin(-1)
    assert accuracy > np.mean(nearest == s) + 0.05
    prediction = PROCESS.predict_next(x)[:, :-1]
    target = x[:, 1:, 0]
    bayes_mse = np.mean((prediction - target) ** 2)
    assert bayes_mse < np.mean((x[:, :-1, 0] - target) ** 2)  # last value
    # The noise alone: the smallest scale squared is a floor of any predictor.
    assert np.min(PROCESS.scales) ** 2 < bayes_mse


def test_one_regime_predicts_the_ar1_mean():
    process = datasets.MarkovSwitchingAR(
        means=(1.0,), coefficients=(0.7,), scales=(0.2,))
    x, s = process.sample(3, 20, seed=0)
    assert np.all(s == 0)
    np.testing.assert_allclose(process.filter(x), 1.0)
    np.testing.assert_allclose(
        process.predict_next(x), 1.0 + 0.7 * (x[..., 0] - 1.0), rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(means=(0.0, 1.0), coefficients=(0.5,), scales=(1.0, 1.0)),
     "one entry per regime"),
    (dict(coefficients=(0.5, 1.0, 0.1)), "coefficients"),
    (dict(scales=(1.0, 0.0, 1.0)), "scales"),
    (dict(means=()), "means"),
    (dict(means="abc"), "means"),
    (dict(stay_probability=1.5), "stay_probability"),
    (dict(stay_probability=0.0), "stay_probability"),
])
def test_bad_process_arguments_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.MarkovSwitchingAR(**kwargs)


def test_bad_sample_and_filter_arguments_fail_clearly():
    with pytest.raises(ValueError, match="num_steps"):
        PROCESS.sample(3, 0)
    with pytest.raises(ValueError, match="seed"):
        PROCESS.sample(3, 5, seed=-1)
    with pytest.raises(ValueError, match=r"\(n, T\)"):
        PROCESS.filter(np.zeros((2, 5, 2)))


# --------------------------------------------------------------------- NMI
def test_nmi_matches_scikit_learn():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=(50, 40))
    noisy = np.where(rng.random(truth.shape) < 0.3,
                     rng.integers(0, 4, size=truth.shape), truth)
    for a, b in [(truth, noisy), (truth, rng.integers(0, 5, truth.shape))]:
        expected = normalized_mutual_info_score(
            a.ravel(), b.ravel(), average_method="geometric")
        assert datasets.normalized_mutual_information(a, b) == (
            pytest.approx(expected, abs=1e-12))


def test_nmi_ignores_the_names_of_the_labels():
    truth = np.array([0, 0, 1, 1, 2, 2, 0])
    assert datasets.normalized_mutual_information(
        truth, (truth + 1) % 3) == pytest.approx(1.0)
    assert datasets.normalized_mutual_information([0, 0], [1, 1]) == 1.0
    assert datasets.normalized_mutual_information([0, 1], [1, 1]) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        datasets.normalized_mutual_information([0, 1], [0, 1, 1])
