"""Tests of the models of the hmm switch (`HMMSwitch`) beyond the default:
every order, diagonal and full covariance, shared and switching AR
coefficients and scales, and `task_gradient`.

What the layer's filter `q_t` and input-likelihood loss are checked
against:

- the HMM forward recursion written out below in NumPy (float64) from the
  model's equations, start-of-sequence rules included, with random weights;
- statsmodels' `MarkovRegression` (Hamilton's filter) for univariate
  diagonal models, conditioned on the first `order` observations;
- the layer itself, run in two chunks through `return_state` and
  `initial_state` (order 2, whose states carry a count of observed lags).

float32 bounds: the layer computes in float32, the references in float64.
Over the few dozen steps of O(1) values of the NumPy tests, 1e-4 (relative
and absolute) covers the layer's rounding on any device (a GPU differs from
the CPU by up to ~1e-4; TF32 is off, see conftest.py). The statsmodels test
runs 150 steps: the filter forgets its errors, so q keeps to 1e-4 absolute,
and the summed log-likelihood (~150 terms of O(1)) to 1e-4 relative.
"""

import re

import keras
import numpy as np
import pytest

from _helpers import BACKEND, SMALL_AR, logsumexp, randomize, softmax
from _helpers import to_numpy, value_and_gradients
from keras_mrnn import MarkovLSTM
from keras_mrnn.switches import HMMSwitch

TOL = dict(rtol=1e-4, atol=1e-4)
LOG_SCALE_FLOOR = -7.0  # the switch's floor of log scales


# ------------------------------------------------------------ helpers
def hmm_layer(num_states, units=4, **kwargs):
    """A `MarkovLSTM` with an hmm switch, returning the sequences of h, q
    and z; `kwargs` go to `HMMSwitch` except the layer's own
    `input_likelihood_weight`, `return_state` and `seed`."""
    layer_kwargs = {
        key: kwargs.pop(key)
        for key in ("input_likelihood_weight", "return_state", "seed")
        if key in kwargs
    }
    return MarkovLSTM(units, num_states=num_states,
                      switch=HMMSwitch(**kwargs), return_switches=True,
                      return_sequences=True, **layer_kwargs)


def natural_parameters(switch):
    """The HMM's parameters from the switch's weights (float64), every one
    broadcast to the K states: `level` (K, F), `P` (K, K) rows, `cov`
    (K, F, F), with diagonal covariance `scale` (K, F), and with order >= 1
    `ar`: (K, order*F) diagonal coefficients or (K, order*F, F) matrices."""
    def weight(name):
        return getattr(switch, name).numpy().astype("float64")

    level = weight("level")
    k, features = level.shape
    params = {"level": level, "P": softmax(weight("transition"))}
    if switch.covariance == "diagonal":
        scale = np.exp(np.maximum(weight("log_scale"), LOG_SCALE_FLOOR))
        params["scale"] = np.broadcast_to(scale, (k, features))
        params["cov"] = np.stack([np.diag(s ** 2) for s in params["scale"]])
    else:
        raw = weight("scale_tril")
        index = np.arange(features)
        tril = np.tril(raw, -1)
        tril[:, index, index] = np.exp(
            np.maximum(raw[:, index, index], LOG_SCALE_FLOOR))
        cov = tril @ np.swapaxes(tril, -1, -2)
        params["cov"] = np.broadcast_to(cov, (k, features, features))
    if switch.order >= 1 and switch.covariance == "diagonal":
        ar = np.tanh(weight("persistence"))
        params["ar"] = np.broadcast_to(ar, (k,) + ar.shape[1:])
    elif switch.order >= 1:
        ar = weight("ar")
        params["ar"] = np.broadcast_to(ar, (k,) + ar.shape[1:])
    return params


def gaussian_log_pdf(x, mean, cov):
    """log N(x; mean, cov) of one vector."""
    residual = x - mean
    _, log_det = np.linalg.slogdet(cov)
    return -0.5 * (residual @ np.linalg.solve(cov, residual) + log_det
                   + len(x) * np.log(2 * np.pi))


def numpy_filter(x, params, order, diagonal, q0=None, past=None):
    """The HMM forward recursion of one sequence x (T, F), from the
    equations (float64).

    State k emits x_t ~ N(mu_k + sum_i A_{k,i} (x_{t-i} - mu_k), Sigma_k);
    a lag before the start of the data is missing and taken at the state's
    level (deviation 0), and with order 1 and diagonal covariance the step
    whose lag is missing is scored under the stationary scale
    s_k / sqrt(1 - a_k^2). The prior of the first step is uniform, or
    q0 @ P given the filter's previous q0; `past` (n, F), in time order,
    are observations before x (lags, not scored). Returns q (T, K) and
    log p(x_t | x_<t) (T,).
    """
    level, transition, covs = params["level"], params["P"], params["cov"]
    k, features = level.shape
    sequence = x if past is None else np.concatenate([past, x])
    start = len(sequence) - len(x)
    prior = np.full(k, 1.0 / k) if q0 is None else q0 @ transition
    qs, log_evidences = [], []
    for position in range(start, len(sequence)):
        log_density = np.empty(k)
        for state in range(k):
            mean, cov = level[state].copy(), covs[state]
            for lag in range(1, order + 1):
                if position - lag < 0:
                    continue  # missing: at the level, deviation 0
                deviation = sequence[position - lag] - level[state]
                block = slice((lag - 1) * features, lag * features)
                if diagonal:
                    mean += params["ar"][state, block] * deviation
                else:
                    mean += deviation @ params["ar"][state, block]
            if order == 1 and diagonal and position == 0:
                scale = params["scale"][state]
                a = params["ar"][state]
                cov = np.diag(scale ** 2 / (1 - a ** 2))
            log_density[state] = gaussian_log_pdf(
                sequence[position], mean, cov)
        joint = np.log(prior) + log_density
        log_evidence = logsumexp(joint)
        q = np.exp(joint - log_evidence)
        qs.append(q)
        log_evidences.append(log_evidence)
        prior = q @ transition
    return np.stack(qs), np.array(log_evidences)


def expected_shapes(k, features, order, switching_ar, switching_scale,
                    covariance):
    """The shapes of the switch's weights, by name, from the docs."""
    k_ar = k if switching_ar else 1
    k_scale = k if switching_scale else 1
    shapes = {"level": (k, features)}
    if order >= 1 and covariance == "diagonal":
        shapes["persistence"] = (k_ar, order * features)
    elif order >= 1:
        shapes["ar"] = (k_ar, order * features, features)
    if covariance == "diagonal":
        shapes["log_scale"] = (k_scale, features)
    else:
        shapes["scale_tril"] = (k_scale, features, features)
    shapes["transition"] = (k, k)
    return shapes


# ---------------------------------------- against the NumPy recursion
# (K, F, HMMSwitch arguments): every order, both covariances, shared and
# switching AR and scales, F = 1 and 2.
CONFIGS = [
    (3, 2, dict(order=0)),
    (2, 2, dict(order=0, covariance="full", switching_scale=False)),
    (3, 1, dict(order=1)),
    (3, 2, dict(order=1, switching_ar=False)),
    (2, 2, dict(order=1, covariance="full", switching_scale=False)),
    (2, 1, dict(order=2, switching_scale=False)),
    (3, 2, dict(order=2, switching_ar=False)),
    (3, 2, dict(order=2, covariance="full")),
    (2, 2, dict(order=2, covariance="full", switching_ar=False,
                switching_scale=False)),
    (2, 2, dict(order=3, covariance="full", switching_scale=False)),
]


def config_id(config):
    k, features, kwargs = config
    words = [f"K{k}", f"F{features}", f"order{kwargs['order']}",
             kwargs.get("covariance", "diagonal")]
    words += [f"shared_{name[10:]}" for name in ("switching_ar",
              "switching_scale") if kwargs.get(name) is False]
    return "-".join(words)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_filter_and_input_likelihood_against_numpy(config):
    k, features, kwargs = config
    x = np.random.default_rng(1).normal(size=(3, 8, features))
    x = x.astype("float32")
    layer = hmm_layer(k, input_likelihood_weight=0.7, **kwargs)
    layer.build(x.shape)
    switch = layer.cell.switch
    full = dict(dict(switching_ar=True, switching_scale=True,
                     covariance="diagonal"), **kwargs)
    assert {w.name[len("switch_"):]: tuple(w.shape)
            for w in switch.weights} == expected_shapes(k, features, **full)
    randomize(switch, seed=2, scales=SMALL_AR)
    _, q, _ = layer(x, training=False)
    params = natural_parameters(switch)
    diagonal = switch.covariance == "diagonal"
    want = [numpy_filter(row.astype("float64"), params, switch.order,
                         diagonal) for row in x]
    np.testing.assert_allclose(q, np.stack([w[0] for w in want]), **TOL)
    log_evidence = np.stack([w[1] for w in want])
    np.testing.assert_allclose(float(to_numpy(layer.losses[-1])),
                               -0.7 * log_evidence.mean(), **TOL)


@pytest.mark.parametrize("config", [
    (3, 2, dict(order=2, covariance="full")),
    (2, 2, dict(order=1)),
], ids=config_id)
def test_masked_steps_are_skipped_by_the_filter(config):
    # Rows: no mask, right padding, left padding, a hole. Each row's valid
    # steps must give the filter of its valid steps alone (the masked
    # inputs, random, must reach neither q nor the lags).
    k, features, kwargs = config
    x = np.random.default_rng(3).normal(size=(4, 9, features))
    x = x.astype("float32")
    mask = np.ones((4, 9), bool)
    mask[1, 6:] = False
    mask[2, :4] = False
    mask[3, 3:5] = False
    layer = hmm_layer(k, input_likelihood_weight=1.3, **kwargs)
    layer.build(x.shape)
    randomize(layer.cell.switch, seed=4, scales=SMALL_AR)
    _, q, _ = layer(x, mask=mask, training=False)
    q = np.asarray(q)
    params = natural_parameters(layer.cell.switch)
    log_evidences = []
    for row in range(4):
        want_q, log_evidence = numpy_filter(
            x[row, mask[row]].astype("float64"), params, kwargs["order"],
            layer.cell.switch.covariance == "diagonal")
        np.testing.assert_allclose(q[row, mask[row]], want_q, **TOL)
        log_evidences.append(log_evidence)
    np.testing.assert_allclose(
        float(to_numpy(layer.losses[-1])),
        -1.3 * np.concatenate(log_evidences).mean(), **TOL)


# ----------------------------------------------- against statsmodels
def sample_switching_ar(steps, level, ar, scale, transition, seed):
    """One univariate Markov-switching AR(order) sequence (steps,): state k
    emits x_t = mu_k + sum_i a_{k,i} (x_{t-i} - mu_k) + s_k eps_t; starts
    in state 0 from x = mu_0, with 50 steps of burn-in dropped."""
    rng = np.random.default_rng(seed)
    order = ar.shape[1]
    x, state = [level[0]] * max(order, 1), 0
    for _ in range(steps + 50):
        state = rng.choice(len(level), p=transition[state])
        deviations = np.array(x[::-1][:order]) - level[state]
        x.append(level[state] + ar[state] @ deviations
                 + scale[state] * rng.normal())
    return np.array(x[-steps:])


@pytest.mark.parametrize("order, switching_ar, switching_scale", [
    (0, True, True),
    (1, True, False),
    (1, False, True),
    (2, True, True),
    (2, False, False),
])
def test_filter_and_likelihood_against_statsmodels(
        order, switching_ar, switching_scale):
    markov_regression = pytest.importorskip(
        "statsmodels.tsa.regime_switching.markov_regression")
    k, steps = 2, 150
    level = np.array([-1.0, 1.5])
    ar = np.array([[0.5, 0.2], [-0.3, 0.1]])[:, :order]
    ar = ar if switching_ar else ar[:1]
    scale = np.array([0.5, 1.0]) if switching_scale else np.array([0.7])
    transition = np.array([[0.95, 0.05], [0.1, 0.9]])
    pi = np.array([0.3, 0.7])
    x = sample_switching_ar(
        steps + order, level, np.broadcast_to(ar, (k, order)),
        np.broadcast_to(scale, (k,)), transition, seed=5)
    x = x.astype("float32").astype("float64")  # the layer's inputs

    # The layer, conditioned on the first `order` values: carried as lags
    # (most recent first), with the filter already going at q0 = pi @ P,
    # so that its first prior is q0 @ P = pi @ P @ P, statsmodels' (below).
    layer = hmm_layer(k, units=3, order=order, switching_ar=switching_ar,
                      switching_scale=switching_scale)
    inputs = x[order:].reshape(1, steps, 1).astype("float32")
    layer.build(inputs.shape)
    layer.cell.switch.set_parameters(
        level[:, None], ar=ar if order else None, scale=scale[:, None],
        transition=transition)
    zeros = np.zeros((1, 3), "float32")
    initial = [zeros, zeros, (pi @ transition)[None].astype("float32")]
    if order >= 1:
        initial.append(x[:order][::-1][None].astype("float32"))
    if order >= 2:
        initial.append(np.full((1, 1), order, "float32"))

    def run():
        outputs = layer(inputs, initial_state=initial, training=False)
        return outputs[1], layer.losses[-1]

    if BACKEND == "tensorflow":
        import tensorflow as tf

        run = tf.function(run)  # A graph: 150 eager steps take seconds.

    q, loss = run()
    log_likelihood = -float(to_numpy(loss)) * steps  # weight 1

    # statsmodels: the constant c_k = mu_k (1 - sum_i a_{k,i}), the lags as
    # exog, sigma2 = s^2. Its known initial probabilities pi are those of
    # two steps before the first observation: its filter runs on the joint
    # (s_t, s_{t-1}) (conditional log-likelihoods (K, K, T) even at model
    # order 0), starts that joint at P' pi and predicts once more, so its
    # first prediction is P'^2 pi (checked below), not P' pi.
    exog = None
    if order:
        exog = np.stack([x[order - i:len(x) - i]
                         for i in range(1, order + 1)], axis=1)
    model = markov_regression.MarkovRegression(
        x[order:], k_regimes=k, trend="c", exog=exog, switching_trend=True,
        switching_exog=switching_ar, switching_variance=switching_scale)
    model.initialize_known(pi)
    ar_k = np.broadcast_to(ar, (k, order))
    scale_k = np.broadcast_to(scale, (k,))
    values = {f"p[{i}->{j}]": transition[i, j]
              for i in range(k) for j in range(k)}
    values["sigma2"] = scale[0] ** 2
    for state in range(k):
        values[f"const[{state}]"] = level[state] * (1 - ar_k[state].sum())
        values[f"sigma2[{state}]"] = scale_k[state] ** 2
        for lag in range(1, order + 1):
            # Shared coefficients are named after the last regime
            # ("x1[1]") when the constant switches: the same value.
            values[f"x{lag}[{state}]"] = values[f"x{lag}"] = (
                ar_k[state, lag - 1])
    params = np.array([values[name] for name in model.param_names])
    # P_sm[i, j] = P(s_t = i | s_{t-1} = j): the transpose of ours.
    np.testing.assert_allclose(
        model.regime_transition_matrix(params)[..., 0], transition.T)
    assert sum(bool(re.match(r"x\d", name)) for name in model.param_names) \
        == order * (k if switching_ar else 1)

    results = model.filter(params)
    # predicted_joint_probabilities[i, j, t] = P(s_t = i, s_{t-1} = j | past)
    np.testing.assert_allclose(
        results.predicted_joint_probabilities[..., 0].sum(axis=1),
        pi @ transition @ transition)

    np.testing.assert_allclose(
        q[0], results.filtered_marginal_probabilities, rtol=0, atol=1e-4)
    np.testing.assert_allclose(log_likelihood, model.loglike(params),
                               rtol=1e-4)


# ------------------------------------------------------ task_gradient
SWITCHES = [dict(), dict(order=2, covariance="full", switching_scale=False)]


def switch_gradients(task_gradient, likelihood_weight, switch_kwargs):
    """The gradients, w.r.t. the switch's weights and the LSTMs' kernel,
    of the task's MSE (a Dense on h against a random target) or, with
    `likelihood_weight > 0`, of the input-likelihood loss alone; in
    training (the Gumbel straight-through switch), random switch weights."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 6, 2)).astype("float32")
    target = rng.normal(size=(4, 6, 1)).astype("float32")
    keras.utils.set_random_seed(7)
    layer = hmm_layer(3, units=5, seed=8, task_gradient=task_gradient,
                      input_likelihood_weight=likelihood_weight,
                      **switch_kwargs)
    dense = keras.layers.Dense(1)
    layer.build(x.shape)
    randomize(layer.cell.switch, seed=9, scales=SMALL_AR)
    dense.build((None, None, 5))
    weights = layer.cell.switch.weights + [layer.cell.kernel]

    def loss_fn():
        h, _, _ = layer(x, training=True)
        if likelihood_weight > 0:
            return layer.losses[-1]
        assert not layer.losses
        return keras.ops.mean(
            (dense(h) - keras.ops.convert_to_tensor(target)) ** 2)

    # A weight that the loss does not reach gets zeros.
    _, grads = value_and_gradients(loss_fn, weights)
    return {w.name: g for w, g in zip(weights, grads)}


def is_zero(grad):
    return not np.any(grad)


@pytest.mark.parametrize("switch_kwargs", SWITCHES, ids=["default",
                                                         "order2-full"])
def test_task_gradient_false_stops_the_tasks_gradient(switch_kwargs):
    stopped = switch_gradients(False, 0.0, switch_kwargs)
    flowing = switch_gradients(True, 0.0, switch_kwargs)
    # The task still trains the LSTMs either way.
    assert not is_zero(stopped.pop("kernel"))
    assert not is_zero(flowing.pop("kernel"))
    assert len(stopped) >= 4
    for name in stopped:
        assert is_zero(stopped[name]), name
        assert not is_zero(flowing[name]), name


@pytest.mark.parametrize("switch_kwargs", SWITCHES, ids=["default",
                                                         "order2-full"])
def test_task_gradient_false_keeps_the_likelihoods_gradient(switch_kwargs):
    stopped = switch_gradients(False, 1.0, switch_kwargs)
    flowing = switch_gradients(True, 1.0, switch_kwargs)
    # The likelihood does not reach the LSTMs.
    assert is_zero(stopped.pop("kernel")) and is_zero(flowing.pop("kernel"))
    for name in stopped:
        assert not is_zero(stopped[name]), name
        # The same computation either way: float32 rounding only.
        np.testing.assert_allclose(stopped[name], flowing[name],
                                   rtol=1e-5, atol=1e-6, err_msg=name)


# ------------------------------------------------ chunks (order 2)
@pytest.mark.parametrize("covariance", ["diagonal", "full"])
@pytest.mark.parametrize("split", [1, 3])
def test_order_two_chunks_through_the_states_equal_one_pass(
        covariance, split):
    # Split after 1 step the count says one lag observed (the other
    # missing); after 3, both.
    x = np.random.default_rng(10).normal(size=(3, 8, 2)).astype("float32")
    layer = hmm_layer(3, order=2, covariance=covariance, return_state=True)
    layer.build(x.shape)
    randomize(layer.cell.switch, seed=11, scales=SMALL_AR)
    h_whole, q_whole = [np.asarray(a) for a in layer(x)[:2]]
    first = layer(x[:, :split])
    states = first[3:]
    assert len(states) == 5  # h, c, q, lags, count
    q_state, lags, count = [np.asarray(s) for s in states[2:]]
    np.testing.assert_allclose(q_state, q_whole[:, split - 1], **TOL)
    want_lags = np.concatenate(
        [x[:, split - 1], x[:, split - 2] if split >= 2 else 0 * x[:, 0]], 1)
    np.testing.assert_allclose(lags, want_lags, **TOL)
    np.testing.assert_array_equal(count, np.full((3, 1), min(split, 2)))
    second = layer(x[:, split:], initial_state=list(states))
    np.testing.assert_allclose(
        np.concatenate([first[1], second[1]], axis=1), q_whole, **TOL)
    np.testing.assert_allclose(
        np.concatenate([first[0], second[0]], axis=1), h_whole, **TOL)


# ------------------------------------- the mapping: parameters <-> weights
MAPPING_CASES = [
    dict(order=order, covariance=covariance, switching_ar=switching_ar,
         switching_scale=switching_scale)
    for order in (0, 1, 2)
    for covariance in ("diagonal", "full")
    for switching_ar, switching_scale in ((True, True), (False, False))
]


def random_parameters(switch, rng):
    """Natural parameters of the switch's shapes, away from its start."""
    k, f, order = switch.num_states, switch.input_dim, switch.order
    k_ar = k if switch.switching_ar else 1
    k_scale = k if switch.switching_scale else 1
    ar = None
    if order and switch.covariance == "diagonal":
        ar = rng.uniform(-0.9, 0.9, (k_ar, order * f))
    elif order:
        ar = rng.normal(size=(k_ar, order * f, f)) * 0.3
    if switch.covariance == "diagonal":
        scale = rng.uniform(0.2, 2.0, (k_scale, f))
    else:
        scale = np.tril(rng.normal(size=(k_scale, f, f)) * 0.3)
        index = np.arange(f)
        scale[:, index, index] = rng.uniform(0.2, 2.0, (k_scale, f))
    transition = rng.dirichlet(np.ones(k), size=k)
    return dict(level=rng.normal(size=(k, f)), ar=ar, scale=scale,
                transition=transition)


@pytest.mark.parametrize(
    "kwargs", MAPPING_CASES,
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_parameters_weights_round_trip(kwargs):
    switch = HMMSwitch(**kwargs)
    MarkovLSTM(3, num_states=3, switch=switch).build((None, None, 2))
    assert switch.is_at_initial_parameters()
    want = random_parameters(switch, np.random.default_rng(0))
    switch.set_parameters(**want)
    assert not switch.is_at_initial_parameters()
    got = switch.get_parameters()
    np.testing.assert_allclose(got["initial"], np.full(3, 1 / 3))
    for name, value in want.items():
        if value is None:
            assert got[name] is None
            continue
        # float32 weights: the logs, tanh and softmax round at ~1e-7.
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    # And back: the weights do not move (to float32 rounding).
    before = [keras.ops.convert_to_numpy(w) for w in switch.weights]
    switch.set_parameters(**got)
    for old, new in zip(before, switch.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(new), old,
                                   rtol=1e-5, atol=1e-5)
    # EM scores parameters without setting them: the same emissions.
    x = np.random.default_rng(1).normal(size=(2, 6, 2))
    np.testing.assert_allclose(
        switch.sequence_log_likelihoods(x, parameters=want),
        switch.sequence_log_likelihoods(x), rtol=1e-5, atol=1e-5)


def test_initial_parameters_are_the_weights_of_a_new_switch():
    switch = HMMSwitch(order=1)
    layer = MarkovLSTM(3, num_states=3, switch=switch)
    layer.build((None, None, 1))
    start = switch.initial_parameters()
    got = switch.get_parameters()
    for name in ("level", "ar", "scale", "transition", "initial"):
        np.testing.assert_allclose(got[name], start[name], rtol=1e-6,
                                   atol=1e-7)
    np.testing.assert_allclose(np.diag(got["transition"]),
                               HMMSwitch.INITIAL_STAY, rtol=1e-6)
    with pytest.raises(ValueError, match="uniform distribution"):
        switch.set_parameters(level=start["level"],
                              initial=[0.5, 0.25, 0.25])
    with pytest.raises(ValueError, match=r"Argument `ar`.*no such"):
        zero = HMMSwitch(order=0)
        MarkovLSTM(3, num_states=3, switch=zero).build((None, None, 1))
        zero.set_parameters(level=start["level"], ar=[[0.5]] * 3)


# ------------------------------------- the regime methods before a fit
def regime_methods(layer):
    return (layer.regime_probabilities, layer.most_likely_regimes,
            layer.regime_log_likelihood)


def test_the_regime_methods_warn_once_before_adapt_or_fit():
    import warnings

    x = np.random.default_rng(0).normal(size=(8, 12, 1)).astype("float32")
    fresh = MarkovLSTM(4, num_states=2, switch="hmm")
    with pytest.warns(UserWarning, match=r"neither adapted nor trained.*"
                      r"layer\.adapt\(x\)"):
        fresh.regime_probabilities(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for method in regime_methods(fresh):       # Once per layer.
            method(x)

        adapted = MarkovLSTM(4, num_states=2, switch="hmm")
        adapted.adapt(x, restarts=1, max_iter=2, seed=0)
        for method in regime_methods(adapted):
            method(x)

        trained = MarkovLSTM(4, num_states=2, switch="hmm")
        model = keras.Sequential([keras.Input((12, 1)), trained,
                                  keras.layers.Dense(1)])
        model.compile("adam", "mse")
        model.fit(x, np.zeros((8, 1)), epochs=1, verbose=0)
        for method in regime_methods(trained):
            method(x)
