"""Tests of `RegimeMixture`, the forecasting head: the predictive mixture of
the next step over the regimes of an `HMMSwitch`, filtered exactly.

What it is checked against:

- the hmm switch's own likelihood (`MarkovLSTM.regime_log_likelihood`, the
  NumPy filter over the same emissions): the head's loss is the mean
  negative log-evidence, and its outputs at t, read as mixtures in NumPy
  here, give `log p(x_{t+1} | x_<=t)`, which add up (chain rule) to the
  whole sequence's log-likelihood minus the first step's;
- with one regime and a summary `h`, a Gaussian density head written out
  in NumPy (mean and log-scale linear in the lag and in `h_{t-1}`);
- SciPy's Student-t for Student-t components.

Bounds: the head computes in float32 over at most 40 steps of O(1)
values; the references compute in float64 from the same float32 weights:
log densities agree to ~1e-5 relative (compared at 1e-4).
"""

import keras
import numpy as np
import pytest
from scipy import stats

from keras_mrnn import MarkovLSTM, RegimeMixture
from keras_mrnn.switches import HMMSwitch, LinearSwitch


TOL = dict(rtol=1e-4, atol=1e-4)


def data(shape=(3, 40, 1), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def mixture_log_prob(outputs, y, num_states, distribution="normal"):
    """log p(y) under packed outputs `(..., K (1 + 2F [+ F]))`, the features
    independent within a regime, in NumPy float64."""
    outputs = np.asarray(keras.ops.convert_to_numpy(outputs), "float64")
    k, f = num_states, y.shape[-1]
    lead = outputs.shape[:-1]
    log_w = outputs[..., :k]
    log_w = log_w - np.log(np.exp(log_w).sum(-1, keepdims=True))
    loc = outputs[..., k:k + k * f].reshape(lead + (k, f))
    scale = np.exp(outputs[..., k + k * f:k + 2 * k * f].reshape(
        lead + (k, f)))
    y = np.asarray(y, "float64")[..., None, :]
    if distribution == "normal":
        log_f = stats.norm.logpdf(y, loc, scale)
    else:
        df = outputs[..., k + 2 * k * f:].reshape(lead + (k, f))
        log_f = stats.t.logpdf(y, df, loc, scale)
    joint = log_w + log_f.sum(-1)
    top = joint.max(-1, keepdims=True)
    return (top + np.log(np.exp(joint - top).sum(-1, keepdims=True)))[..., 0]


def switch_layer(switch_kwargs, head, x):
    """A MarkovLSTM whose hmm switch has the head's parameters."""
    layer = MarkovLSTM(2, num_states=head.num_states,
                       switch=HMMSwitch(**switch_kwargs))
    layer.build((None, None, x.shape[-1]))
    layer.cell.switch.set_parameters(**{
        name: value for name, value in head.switch.get_parameters().items()
        if name != "initial"})
    return layer


@pytest.mark.parametrize("switch_kwargs", [
    dict(order=0), dict(order=1), dict(order=2, switching_ar=False)],
    ids=["order0", "order1", "order2-shared-ar"])
def test_outputs_are_the_switch_models_one_step_predictive(switch_kwargs):
    x = data()
    head = RegimeMixture(num_states=3, switch=HMMSwitch(**switch_kwargs))
    head.build(x.shape)
    head.adapt(x, restarts=2, max_iter=10, seed=0)
    outputs = head(x)
    layer = switch_layer(switch_kwargs, head, x)
    whole = layer.regime_log_likelihood(x)
    # The loss: the mean negative log-evidence over every step.
    np.testing.assert_allclose(float(head.losses[-1]),
                               -whole.sum() / x[..., 0].size, **TOL)
    # The outputs at t predict x_{t+1}: the chain rule.
    log_p = mixture_log_prob(outputs[:, :-1], x[:, 1:], 3)
    first = layer.regime_log_likelihood(x[:, :1])
    np.testing.assert_allclose(log_p.sum(1), whole - first, **TOL)


def test_one_regime_with_a_summary_is_a_gaussian_density_head():
    x = data((2, 30, 1), seed=1)
    h = data((2, 30, 4), seed=2)
    head = RegimeMixture(num_states=1, switch=HMMSwitch(order=1))
    head.build([x.shape, h.shape])
    rng = np.random.default_rng(3)
    for weight in head.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32") * 0.3)
    outputs = head([x, h])
    p = head.switch.get_parameters()
    level, a, s = p["level"][0, 0], p["ar"][0, 0], p["scale"][0, 0]
    w_loc = keras.ops.convert_to_numpy(head.loc_kernel)[:, 0]
    w_scale = keras.ops.convert_to_numpy(head.scale_kernel)[:, 0]
    # x_{t+1} ~ N(level + a (x_t - level) + h_t w_loc, s exp(h_t w_scale)).
    x64, h64 = x[..., 0].astype("float64"), h.astype("float64")
    mean = level + a * (x64 - level) + h64 @ w_loc
    scale = s * np.exp(h64 @ w_scale)
    want = stats.norm.logpdf(x64[:, 1:], mean[:, :-1], scale[:, :-1])
    got = mixture_log_prob(outputs[:, :-1], x[:, 1:], 1)
    np.testing.assert_allclose(got, want, **TOL)
    # The loss's first step: the AR(1)'s stationary law, no summary yet.
    first = stats.norm.logpdf(x64[:, 0], level, s / np.sqrt(1 - a * a))
    np.testing.assert_allclose(
        float(head.losses[-1]),
        -(want.sum() + first.sum()) / x64.size, **TOL)


def test_student_t_components():
    x = data((2, 25, 2), seed=4)
    switch_kwargs = dict(order=1, distribution="student_t")
    head = RegimeMixture(num_states=2, switch=HMMSwitch(**switch_kwargs))
    head.build(x.shape)
    head.adapt(x, restarts=2, max_iter=5, seed=0)
    head.switch.set_parameters(level=head.switch.get_parameters()["level"],
                               df=np.array([[3.0, 5.0], [8.0, 30.0]]))
    outputs = head(x)
    layer = switch_layer(switch_kwargs, head, x)
    log_p = mixture_log_prob(outputs[:, :-1], x[:, 1:], 2, "student_t")
    np.testing.assert_allclose(
        log_p.sum(1),
        layer.regime_log_likelihood(x)
        - layer.regime_log_likelihood(x[:, :1]), **TOL)


def model_with_summary(distribution="normal", seed=0):
    inputs = keras.Input((None, 1))
    h = keras.layers.LSTM(6, return_sequences=True, seed=seed)(inputs)
    head = RegimeMixture(num_states=2, switch=HMMSwitch(
        order=1, distribution=distribution))
    return keras.Model(inputs, head([inputs, h])), head


def test_fit_lowers_the_loss_and_the_model_saves(tmp_path):
    keras.utils.set_random_seed(0)
    x = data((8, 30, 1), seed=5)
    model, head = model_with_summary("student_t")
    head.adapt(x, restarts=1, max_iter=5, seed=0)
    model.compile(keras.optimizers.Adam(0.01))
    history = model.fit(x, epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = str(tmp_path / "head.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)
    assert loaded.layers[-1].switch.distribution == "student_t"


def test_bad_arguments_fail_clearly():
    with pytest.raises(TypeError, match="HMMSwitch"):
        RegimeMixture(switch=LinearSwitch())
    with pytest.raises(ValueError, match="diagonal"):
        RegimeMixture(switch=HMMSwitch(covariance="full"))
    with pytest.raises(ValueError, match="num_states"):
        RegimeMixture(num_states=0)
    head = RegimeMixture()
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        head.build((4, 3))
    x, h = data((2, 5, 1)), data((2, 5, 3))
    head = RegimeMixture()
    head([x, h])
    with pytest.raises(ValueError, match="summary"):
        head(x)


def test_forecast_one_step_is_the_last_output_and_paths_repeat():
    x = data((2, 30, 1), seed=6)
    inputs = keras.Input((None, 1))
    head = RegimeMixture(num_states=2, switch=HMMSwitch(order=1))
    model = keras.Model(inputs, head(inputs))
    head.adapt(x, restarts=1, max_iter=5, seed=0)
    a = head.forecast(model, x, horizon=3, num_samples=4000, seed=1)
    b = head.forecast(model, x, horizon=3, num_samples=4000, seed=1)
    np.testing.assert_array_equal(a.samples, b.samples)
    outputs = model.predict(x, verbose=0)[:, -1]
    y = np.linspace(-3, 3, 7)[:, None, None] * np.ones((1, 2, 1))
    np.testing.assert_allclose(
        a.one_step.log_prob(y)[..., 0], mixture_log_prob(
            np.broadcast_to(outputs, (7,) + outputs.shape), y, 2), **TOL)
    # Future regimes: the next step's weights times P^(h-1).
    transition = head.switch.get_parameters()["transition"]
    np.testing.assert_allclose(
        a.regime_probabilities[:, 2],
        a.regime_probabilities[:, 0] @ transition @ transition, **TOL)
    # The first step of the paths follows the exact one-step mixture.
    first = a.samples[:, :, 0, 0]
    assert np.all(np.abs(first.mean(0) - a.mean[:, 0, 0])
                  < 5 * first.std(0) / np.sqrt(4000))
    assert a.samples.shape == (4000, 2, 3, 1) and list(a.exact) == [
        True, False, False]


def test_regime_forecaster_saves_and_loads_safely(tmp_path):
    import keras_mrnn

    x = data((3, 20, 2), seed=7)
    model = keras_mrnn.regime_forecaster(features=2, units=4, num_states=2,
                                         seed=1)
    model.layers[-1].adapt(x, restarts=1, max_iter=3, seed=0)
    want = model.predict(x, verbose=0)
    path = str(tmp_path / "forecaster.keras")
    model.save(path)
    # safe_mode (the default): no Lambda layer to refuse.
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want, atol=1e-6)
    assert keras_mrnn.regime_forecaster(units=0).layers[-1].summary_units \
        is None
    with pytest.raises(ValueError, match="units"):
        keras_mrnn.regime_forecaster(units=-1)
