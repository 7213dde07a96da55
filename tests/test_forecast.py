"""Tests of the hmm switch's forecasts (`MarkovLSTM.forecast`): a
Markov-switching VAR forecast as distributions.

What they are checked against:

- the model's own likelihood: the one-step log predictive densities of a
  test segment add up to `regime_log_likelihood` of the whole sequence
  minus that of its prefix (the chain rule);
- the filter at T times `P^h` written out here, for the future regime
  probabilities;
- statsmodels' `MarkovRegression` at the same parameters (uniform initial
  probabilities), whose `llf_obs` are its one-step log predictive
  densities;
- the exact mixture (order 0), and a sampler of the MS-AR written out here
  in NumPy from `get_parameters` (order 1), for the sample paths' moments.

Bounds: the forecasts compute in float64 from the float32 weights, as the
references do from the same weights, so the closed forms agree to ~1e-9 (1e-6
is used, the issue's bar). Sample moments are compared at 5 standard errors
of their Monte Carlo estimate (a false failure ~1e-6).
"""

import numpy as np
import pytest

from keras_mrnn import MarkovLSTM
from keras_mrnn.datasets import MarkovSwitchingAR
from keras_mrnn.switches import HMMSwitch


TOL = dict(rtol=1e-6, atol=1e-6)


def adapted_layer(order, x, num_states=3, **kwargs):
    layer = MarkovLSTM(4, num_states=num_states,
                       switch=HMMSwitch(order=order, **kwargs))
    layer.adapt(x, restarts=2, max_iter=20, seed=0)
    return layer


@pytest.fixture(scope="module")
def series():
    x, _ = MarkovSwitchingAR().sample(6, 60, seed=0)
    return x


@pytest.mark.parametrize("order", [0, 1, 2])
def test_one_step_densities_follow_the_chain_rule(series, order):
    layer = adapted_layer(order, series)
    # The last 5 steps: each prefix length is a new input shape (a new
    # compilation on JAX), and 5 products of the chain rule check it as
    # well as 20 (each factor is one step's density, from its own prefix).
    start, end = 55, 60
    x = series[:, :end]
    got = sum(
        layer.forecast(x[:, :t], num_samples=1).one_step.log_prob(
            x[:, t])[:, 0]
        for t in range(start, end))
    want = (layer.regime_log_likelihood(x)
            - layer.regime_log_likelihood(x[:, :start]))
    np.testing.assert_allclose(got, want, **TOL)


def test_future_regime_probabilities_are_the_filter_times_p_to_the_h(series):
    layer = adapted_layer(1, series)
    result = layer.forecast(series, horizon=4, num_samples=1, seed=0)
    q = layer.regime_probabilities(series)[:, -1]
    transition = layer.cell.switch.get_parameters()["transition"]
    for h in range(4):
        q = q @ transition
        np.testing.assert_allclose(result.regime_probabilities[:, h], q,
                                   **TOL)


def test_one_step_density_equals_statsmodels_at_the_same_parameters():
    sm = pytest.importorskip("statsmodels.tsa.regime_switching."
                             "markov_regression")
    process = MarkovSwitchingAR()
    y = process.sample(1, 200, seed=3)[0][0, :, 0]
    layer = adapted_layer(0, y[None, :, None], num_states=2)
    params = layer.cell.switch.get_parameters()
    model = sm.MarkovRegression(y, k_regimes=2, switching_variance=True)
    model.initialize_known(params["initial"])
    # statsmodels: P[i, j] = p(s_t = i | s_{t-1} = j), its free
    # parameters the first k - 1 rows.
    transition = params["transition"]
    theta = np.concatenate([
        transition.T[:-1].ravel(order="F"), params["level"][:, 0],
        params["scale"][:, 0] ** 2])
    # (statsmodels takes the last row as 1 minus the others: the float32
    # rounding of our rows, ~1e-7.)
    np.testing.assert_allclose(
        model.regime_transition_matrix(theta)[..., 0], transition.T,
        atol=1e-6)
    llf_obs = model.filter(theta).llf_obs
    for t in (1, 50, 199):
        got = layer.forecast(y[None, :t, None], num_samples=1).one_step
        np.testing.assert_allclose(got.log_prob(y[t])[0, 0], llf_obs[t],
                                   **TOL)


def test_order_zero_samples_match_the_exact_mixture(series):
    layer = adapted_layer(0, series)
    result = layer.forecast(series[:2], horizon=3, num_samples=20000,
                            quantiles=(0.1, 0.9), seed=0)
    assert result.exact.all()
    samples = result.samples                         # (S, N, H, F)
    standard_error = samples.std(0) / np.sqrt(len(samples))
    assert np.all(np.abs(samples.mean(0) - result.mean)
                  < 5 * standard_error)
    # The exact quantiles hold their share of the samples (binomial bound).
    below = (samples < result.quantiles[0]).mean(0)
    assert np.all(np.abs(below - 0.1) < 5 * np.sqrt(0.09 / len(samples)))


def numpy_ms_ar_paths(parameters, last, filtered, horizon, size, rng):
    """Order-1 diagonal MS-AR sample paths from the natural parameters,
    written from the model's equation: x_t = mu_s + a_s (x_{t-1} - mu_s) +
    s_s e_t, one sequence."""
    level = parameters["level"][:, 0]
    ar, scale = parameters["ar"][:, 0], parameters["scale"][:, 0]
    transition = parameters["transition"]
    transition = transition / transition.sum(1, keepdims=True)
    k = len(level)
    first = filtered @ transition
    state = rng.choice(k, size=size, p=first / first.sum())
    value = np.full(size, last)
    out = np.empty((size, horizon))
    for h in range(horizon):
        if h:
            state = np.array([rng.choice(k, p=transition[s]) for s in state])
        value = level[state] + ar[state] * (value - level[state]) + (
            scale[state] * rng.standard_normal(size))
        out[:, h] = value
    return out


def test_order_one_paths_match_a_numpy_monte_carlo_reference(series):
    layer = adapted_layer(1, series)
    x = series[:1]
    result = layer.forecast(x, horizon=3, num_samples=20000,
                            quantiles=(0.25, 0.75), seed=1)
    assert list(result.exact) == [True, False, False]
    reference = numpy_ms_ar_paths(
        layer.cell.switch.get_parameters(), x[0, -1, 0],
        layer.regime_probabilities(x)[0, -1], 3, 20000,
        np.random.default_rng(2))
    ours = result.samples[:, 0, :, 0]
    standard_error = np.sqrt((ours.var(0) + reference.var(0)) / 20000)
    assert np.all(np.abs(ours.mean(0) - reference.mean(0))
                  < 5 * standard_error)
    # And one step ahead the sample paths agree with the exact mixture.
    assert abs(ours[:, 0].mean() - result.mean[0, 0, 0]) < 5 * np.sqrt(
        ours[:, 0].var() / 20000)


def test_seeded_forecasts_repeat(series):
    layer = adapted_layer(1, series)
    a = layer.forecast(series[:2], horizon=3, num_samples=50, seed=7)
    b = layer.forecast(series[:2], horizon=3, num_samples=50, seed=7)
    c = layer.forecast(series[:2], horizon=3, num_samples=50, seed=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)


def test_masked_history_forecasts_from_the_last_valid_step(series):
    layer = adapted_layer(1, series)
    mask = np.ones(series.shape[:2], bool)
    mask[0, 50:] = False
    padded = np.where(mask[..., None], series, np.nan)
    got = layer.forecast(padded, mask=mask, num_samples=1).one_step
    alone = layer.forecast(series[:1, :50], num_samples=1).one_step
    np.testing.assert_allclose(got.mean()[0], alone.mean()[0], **TOL)


def test_bad_arguments_fail_clearly(series):
    layer = adapted_layer(2, series)
    with pytest.raises(ValueError, match="horizon"):
        layer.forecast(series, horizon=0)
    with pytest.raises(ValueError, match="num_samples"):
        layer.forecast(series, num_samples=0)
    with pytest.raises(ValueError, match="quantiles"):
        layer.forecast(series, quantiles=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"at least 2 valid steps"):
        layer.forecast(series[:, :1])
    with pytest.raises(ValueError, match="hmm switch"):
        MarkovLSTM(4, num_states=2).forecast(series)
