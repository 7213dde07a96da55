"""Tests of `MarkovLSTM.adapt`, the EM fit of the hmm switch.

References: the true parameters of data drawn from a known process, the
Bayes filter that knows them, statsmodels' maximum-likelihood fit of the
same model (`MarkovRegression` with the lag as a switching regressor), and
the layer's own forward filter (its summed log-evidence at the fitted
parameters is the log-likelihood `adapt` returns).

Bounds: EM runs in float64; the layer's log-evidence is float32 summed over
a few thousand steps of O(1) values, within 1e-5 relative of the float64
sum. Parameter recovery is bounded by the sampling error of the fit (for
20,000 steps, ~0.02 on levels and AR coefficients: the tolerances below
are about three times that).
"""

import keras
import numpy as np
import pytest

from keras_mrnn import MarkovLSTM
from keras_mrnn.datasets import MarkovSwitchingAR
from keras_mrnn.datasets import normalized_mutual_information
from keras_mrnn.switches import HMMSwitch


def layer_log_likelihood(layer, x, mask=None):
    """The layer's input log-likelihood of x in nats (its loss term,
    un-averaged)."""
    layer(x.astype("float32"), mask=mask)
    steps = x.shape[0] * x.shape[1] if mask is None else mask.sum()
    return -float(layer.losses[-1]) * steps


def test_adapt_recovers_the_parameters_of_a_known_process():
    process = MarkovSwitchingAR()
    x, regimes = process.sample(200, 100, seed=0)
    layer = MarkovLSTM(4, num_states=3, switch="hmm", return_switches=True)
    log_likelihood = layer.adapt(x, restarts=4, seed=0)
    switch = layer.cell.switch
    order = np.argsort(switch.level.numpy()[:, 0])   # Up to relabelling.
    want = np.argsort(process.means)
    np.testing.assert_allclose(
        switch.level.numpy()[order, 0], process.means[want], atol=0.06)
    np.testing.assert_allclose(
        np.tanh(switch.persistence.numpy()[order, 0]),
        process.coefficients[want], atol=0.06)
    np.testing.assert_allclose(
        np.exp(switch.log_scale.numpy()[order, 0]), process.scales[want],
        rtol=0.06)
    transition = keras.ops.convert_to_numpy(
        keras.ops.softmax(switch.transition, axis=-1))
    np.testing.assert_allclose(
        transition[np.ix_(order, order)],
        process.transition_matrix[np.ix_(want, want)], atol=0.02)
    # The fit's log-likelihood is the layer's filter's, at those weights.
    assert layer_log_likelihood(layer, x) == pytest.approx(
        log_likelihood, rel=1e-5)
    # And its states follow the regimes as the Bayes filter does.
    _, q, _ = layer(x.astype("float32"))
    nmi = normalized_mutual_information(regimes, np.argmax(q, -1))
    ceiling = normalized_mutual_information(
        regimes, np.argmax(process.filter(x), -1))
    assert nmi >= 0.98 * ceiling


def test_every_seed_of_the_restarts_finds_the_same_optimum():
    process = MarkovSwitchingAR()
    x, _ = process.sample(100, 100, seed=1)
    values = []
    for seed in range(4):
        layer = MarkovLSTM(4, num_states=3, switch="hmm")
        values.append(layer.adapt(x, restarts=4, seed=seed))
    assert max(values) - min(values) < 0.5


def sample_two_regimes(steps, seed):
    """A univariate 2-state switching AR(1): calm and persistent around
    1.0, volatile around -0.5; stays 0.95 and 0.9."""
    process = MarkovSwitchingAR(
        means=(1.0, -0.5), coefficients=(0.6, 0.1), scales=(0.4, 1.0),
        stay_probability=0.93)
    x, _ = process.sample(1, steps, seed=seed)
    return x


def test_adapt_is_at_least_as_good_as_statsmodels_on_the_same_model():
    regime = pytest.importorskip(
        "statsmodels.tsa.regime_switching.markov_regression")
    x = sample_two_regimes(400, seed=2)
    series = x[0, :, 0]
    model = regime.MarkovRegression(
        series[1:], k_regimes=2, trend="c", exog=series[:-1, None],
        switching_exog=True, switching_variance=True)
    # statsmodels' random search draws from NumPy's global generator:
    # seeded, and with its default start kept when that is better (either
    # alone can stop at a worse optimum), so the reference does not depend
    # on the tests run before this one.
    np.random.seed(0)
    fitted = max([model.fit(disp=False),
                  model.fit(search_reps=5, disp=False)],
                 key=lambda fit: fit.llf)
    params = dict(zip(model.param_names, fitted.params))
    stay = np.array([params["p[0->0]"], 1 - params["p[1->0]"]])
    transition = np.array([[stay[0], 1 - stay[0]], [1 - stay[1], stay[1]]])
    a = np.array([params["x1[0]"], params["x1[1]"]])
    const = np.array([params["const[0]"], params["const[1]"]])
    sigma = np.sqrt([params["sigma2[0]"], params["sigma2[1]"]])

    # statsmodels' parameters, scored by our model (the same but for the
    # first step, which statsmodels conditions on).
    theirs = MarkovLSTM(4, num_states=2, switch="hmm")
    theirs.build((None, None, 1))
    theirs.cell.switch.set_parameters(
        level=(const / (1 - a))[:, None], ar=a[:, None],
        scale=sigma[:, None], transition=transition)
    at_their_fit = layer_log_likelihood(theirs, x)

    ours = MarkovLSTM(4, num_states=2, switch="hmm")
    log_likelihood = ours.adapt(x, seed=0)
    assert log_likelihood >= at_their_fit - 0.1
    # Both fits find the same regimes (same labels up to relabelling).
    assert np.sort(ours.cell.switch.level.numpy()[:, 0]) == pytest.approx(
        np.sort(const / (1 - a)), abs=0.1)


def sample_correlated_regimes(num_sequences, steps, seed):
    """Two features with N(0, 1) marginals, correlation +0.8 in regime 0
    and -0.8 in regime 1; the regime stays with probability 0.97."""
    rng = np.random.default_rng(seed)
    regimes = np.zeros((num_sequences, steps), int)
    regimes[:, 0] = rng.integers(0, 2, num_sequences)
    for t in range(1, steps):
        flip = rng.random(num_sequences) >= 0.97
        regimes[:, t] = np.where(flip, 1 - regimes[:, t - 1],
                                 regimes[:, t - 1])
    covariances = np.array([[[1.0, 0.8], [0.8, 1.0]],
                            [[1.0, -0.8], [-0.8, 1.0]]])
    factors = np.linalg.cholesky(covariances)[regimes]
    noise = rng.normal(size=(num_sequences, steps, 2))
    return np.einsum("ntij,ntj->nti", factors, noise), regimes, covariances


def bayes_filter(x, covariances, stay):
    """The forward filter with the true parameters (NumPy, float64)."""
    inverse = np.linalg.inv(covariances)
    log_det = np.linalg.slogdet(covariances)[1]
    log_lik = -0.5 * (np.einsum("nti,kij,ntj->ntk", x, inverse, x)
                      + log_det + 2 * np.log(2 * np.pi))
    transition = np.array([[stay, 1 - stay], [1 - stay, stay]])
    prior = np.full((x.shape[0], 2), 0.5)
    posterior = []
    for t in range(x.shape[1]):
        joint = prior * np.exp(log_lik[:, t])
        posterior.append(joint / joint.sum(-1, keepdims=True))
        prior = posterior[-1] @ transition
    return np.stack(posterior, 1)


def test_full_covariance_finds_regimes_of_correlation():
    x, regimes, covariances = sample_correlated_regimes(200, 100, seed=3)
    ceiling = normalized_mutual_information(
        regimes, np.argmax(bayes_filter(x, covariances, 0.97), -1))
    full = MarkovLSTM(4, num_states=2, return_switches=True,
                      switch=HMMSwitch(order=0, covariance="full"))
    full.adapt(x, restarts=4, seed=0)
    _, q, _ = full(x.astype("float32"))
    nmi = normalized_mutual_information(regimes, np.argmax(q, -1))
    assert nmi >= 0.9 * ceiling
    # Independent features given the state cannot see them at all.
    diagonal = MarkovLSTM(4, num_states=2, return_switches=True,
                          switch=HMMSwitch(order=0))
    diagonal.adapt(x, restarts=4, seed=0)
    _, q, _ = diagonal(x.astype("float32"))
    assert normalized_mutual_information(regimes, np.argmax(q, -1)) < 0.05


@pytest.mark.parametrize("switch", [
    HMMSwitch(order=2, switching_ar=False),
    HMMSwitch(order=1, covariance="full", switching_scale=False),
])
def test_masked_steps_are_ignored(switch):
    x, _ = MarkovSwitchingAR().sample(20, 60, seed=4)
    if switch.covariance == "full":
        x = np.concatenate([x, 0.5 * x + 0.3], axis=-1)
    # Left padding of garbage (NaN included), masked out.
    padded = np.concatenate([np.full((20, 5, x.shape[-1]), np.nan), x], 1)
    mask = np.concatenate([np.zeros((20, 5), bool), np.ones((20, 60), bool)],
                          1)
    layer = MarkovLSTM(4, num_states=3, switch=switch)
    got = layer.adapt(padded, mask=mask, restarts=2, seed=0)
    plain = MarkovLSTM(4, num_states=3,
                       switch=HMMSwitch.from_config(switch.get_config()))
    want = plain.adapt(x, restarts=2, seed=0)
    assert got == pytest.approx(want, rel=1e-9)
    assert layer_log_likelihood(
        layer, np.nan_to_num(padded), mask) == pytest.approx(got, rel=1e-5)


def test_adapt_fails_clearly_on_bad_input():
    x = np.random.default_rng(5).normal(size=(4, 10, 2))
    with pytest.raises(ValueError, match="`adapt` needs the hmm switch.*LinearSwitch"):
        MarkovLSTM(4).adapt(x)
    with pytest.raises(ValueError, match="`adapt` needs the hmm switch.*Predictive"):
        MarkovLSTM(4, switch="predictive").adapt(x)
    layer = MarkovLSTM(4, num_states=2, switch="hmm")
    bad = x.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="finite.*1 NaN.*\\(1, 3, 0\\)"):
        layer.adapt(bad)
    with pytest.raises(ValueError, match="\\(batch, time, features\\)"):
        layer.adapt(x[0])
    with pytest.raises(ValueError, match="`mask` must have shape"):
        layer.adapt(x, mask=np.ones((4, 9), bool))
    with pytest.raises(ValueError, match="no valid step"):
        layer.adapt(x, mask=np.zeros((4, 10), bool))
    with pytest.raises(ValueError, match="`restarts`"):
        layer.adapt(x, restarts=0)
    layer.build((None, None, 3))
    with pytest.raises(ValueError, match="built for 3 features.*with 2"):
        layer.adapt(x)


def test_adapt_fits_the_order_the_layer_reads():
    x, _ = MarkovSwitchingAR().sample(20, 50, seed=6)
    backwards = MarkovLSTM(4, num_states=3, switch="hmm", go_backwards=True)
    log_likelihood = backwards.adapt(x, restarts=2, seed=0)
    # The reversed sequences are what the layer filters, and what was fit.
    assert backwards.regime_log_likelihood(x).sum() == pytest.approx(
        log_likelihood, rel=1e-6)
    forwards = MarkovLSTM(4, num_states=3, switch="hmm")
    assert forwards.adapt(x[:, ::-1], restarts=2, seed=0) == pytest.approx(
        log_likelihood, rel=1e-9)


def test_adapt_takes_a_dataset_of_equal_length_batches():
    tf = pytest.importorskip("tensorflow")
    x, _ = MarkovSwitchingAR().sample(10, 30, seed=7)
    want = MarkovLSTM(4, num_states=3, switch="hmm").adapt(
        x, restarts=2, seed=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, x[:, :, 0])).batch(4)
    got = MarkovLSTM(4, num_states=3, switch="hmm").adapt(
        dataset, restarts=2, seed=0)
    assert got == pytest.approx(want, rel=1e-9)
    uneven = tf.data.Dataset.from_tensor_slices(x[:4]).batch(2).concatenate(
        tf.data.Dataset.from_tensor_slices(x[4:8, :20]).batch(2))
    layer = MarkovLSTM(4, num_states=3, switch="hmm")
    with pytest.raises(ValueError, match="different lengths \\[20, 30\\]"):
        layer.adapt(uneven)
    with pytest.raises(ValueError, match="different lengths"):
        layer.regime_probabilities(uneven)


def test_adapt_needs_steps_with_all_their_lags():
    x = np.random.default_rng(8).normal(size=(3, 4, 1))
    layer = MarkovLSTM(4, num_states=2, switch=HMMSwitch(order=5))
    with pytest.raises(ValueError, match="all their 5 lags.*4 valid steps"):
        layer.adapt(x)


def test_set_parameters_checks_shapes_and_inference_checks_values():
    layer = MarkovLSTM(4, num_states=2, switch="hmm")
    layer.build((None, None, 1))
    with pytest.raises(ValueError, match="`transition` must have shape"):
        layer.cell.switch.set_parameters(
            level=[[0.0], [1.0]], transition=np.eye(3))
    x = np.zeros((2, 5, 1))
    x[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match="finite.*\\(1, 2, 0\\)"):
        layer.regime_probabilities(x)
