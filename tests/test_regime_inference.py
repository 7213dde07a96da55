"""Tests of the hmm switch's inference after the fact: `MarkovLSTM`'s
`regime_probabilities` (filter and smoother), `most_likely_regimes`
(Viterbi) and `regime_log_likelihood`.

What they are checked against:

- a log-space forward-backward and Viterbi written out in NumPy
  (float64, `tests/_helpers.py`), over emissions computed here from the
  model's equations and the switch's weights (not by
  `HMMSwitch.log_likelihoods`);
- `tfp.distributions.HiddenMarkovModel`, with a time-varying observation
  distribution (the AR emission's mean depends on the observed x_{t-1});
- the layer's own filter `q` and input-likelihood loss;
- the Bayes filter of `datasets.MarkovSwitchingAR` and a NumPy smoother and
  Viterbi from the process's true parameters;
- the same sequences unpadded (masks), as arrays, tensors and datasets, and
  reversed (`go_backwards`).

float32 bounds: the methods compute in float64 from the float32 weights
(the switch's `parameters()` rounds the derived ones, log P, tanh and the
stationary first scale, to float32: ~6e-8 relative), and the references in
float64 from the same float32 weights. On JAX (without `jax_enable_x64`)
the emissions themselves are float32, rounded at ~6e-8 relative: < 1e-6
absolute on the O(1..10) log-densities here, the recursions after them
float64. Over the ~12 (or 200, where the filter forgets) steps of O(1)
values here either moves probabilities by < 1e-6, so they are compared at
1e-5 (and log-likelihoods, sums of up to 200 terms of O(1..10), at 1e-5
relative). The layer's own filter runs in
float32 (rounding ~1e-7 per op over the recursion): its `q` and loss are
compared at 1e-4, as in test_hmm_switch.py. Viterbi paths are compared
exactly: with random weights, the best and second-best paths' log
probabilities differ by far more than that rounding.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from _helpers import SMALL_AR, numpy_forward_backward, numpy_viterbi
from _helpers import randomize, softmax, to_numpy
from keras_mrnn import MarkovLSTM
from keras_mrnn.datasets import MarkovSwitchingAR
from keras_mrnn.switches import HMMSwitch

# tfp's HMM (TensorFlow's, on NumPy inputs) and tf.data datasets, which
# the methods take on every backend, are the only uses of TensorFlow here.
tfd = tfp.distributions

TOL = dict(rtol=1e-5, atol=1e-5)         # float64 methods vs float64 refs
LAYER_TOL = dict(rtol=1e-4, atol=1e-4)   # the layer's float32 filter
K = 3


# ------------------------------------------------------------ NumPy maths
def hmm_layer(switch, units=2, **kwargs):
    return MarkovLSTM(units, num_states=K, switch=switch,
                      return_switches=True, return_sequences=True, **kwargs)


def model_from_weights(switch):
    """The HMM from the switch's weights, float64, for order 0 or 1:
    `level` (K, F), `P` (K, K), `A` (K, F, F) AR matrices acting on the row
    of lag deviations (zero for order 0), `tril` (K, F, F) the Cholesky
    factor of Sigma_k, and `first_tril`, that of the first step (the
    stationary scale s_k / sqrt(1 - a_k^2) for order 1 diagonal)."""
    assert switch.order in (0, 1)

    def weight(name):
        return getattr(switch, name).numpy().astype("float64")

    level = weight("level")
    k, features = level.shape
    index = np.arange(features)
    if switch.covariance == "diagonal":
        scale = np.broadcast_to(np.exp(weight("log_scale")), (k, features))
        tril = np.zeros((k, features, features))
        tril[:, index, index] = scale
    else:
        raw = np.broadcast_to(weight("scale_tril"), (k, features, features))
        tril = np.tril(raw, -1)
        tril[:, index, index] = np.exp(raw[:, index, index])
    first_tril = tril.copy()
    ar = np.zeros((k, features, features))
    if switch.order == 1 and switch.covariance == "diagonal":
        a = np.broadcast_to(np.tanh(weight("persistence")), (k, features))
        ar[:, index, index] = a
        first_tril[:, index, index] = scale / np.sqrt(1.0 - a ** 2)
    elif switch.order == 1:
        ar = np.broadcast_to(weight("ar"), (k, features, features)).copy()
    return dict(level=level, P=softmax(weight("transition")), A=ar,
                tril=tril, first_tril=first_tril)


def emission_moments(x, model):
    """`(mean (N, T, K, F), tril (T, K, F, F))` of x_t given each state:
    mu_k + (x_{t-1} - mu_k) A_k (the lag before the first step missing,
    deviation 0), Cholesky factor `first_tril` at the first step, `tril`
    after it."""
    level = model["level"]
    n, steps, _ = x.shape
    deviation = np.zeros((n, steps) + level.shape)
    deviation[:, 1:] = x[:, :-1, None, :] - level
    mean = level + np.einsum("ntkf,kfg->ntkg", deviation, model["A"])
    tril = np.broadcast_to(model["tril"], (steps,) + model["tril"].shape)
    tril = np.concatenate([model["first_tril"][None], tril[1:]])
    return mean, tril


def gaussian_log_pdf(x, mean, tril):
    """log N(x; mean, L L') with x (..., F) against (..., F), (..., F, F)."""
    features = x.shape[-1]
    residual = np.broadcast_to(x - mean, np.broadcast_shapes(
        (x - mean).shape, tril.shape[:-1]))
    z = np.linalg.solve(np.broadcast_to(tril, residual.shape + (features,)),
                        residual[..., None])[..., 0]
    log_det = np.sum(np.log(np.diagonal(tril, axis1=-2, axis2=-1)), -1)
    return -0.5 * np.sum(z * z, -1) - log_det - 0.5 * features * np.log(
        2 * np.pi)


def emissions(x, model):
    """log p(x_t | s_t = k, x_<t) (N, T, K)."""
    mean, tril = emission_moments(x, model)
    return gaussian_log_pdf(x[:, :, None, :], mean, tril)


def references(log_b, transition):
    """The NumPy filter, smoother, Viterbi paths and log-likelihoods of a
    batch of full-length sequences `log_b` (N, T, K), from a uniform first
    state (`tests/_helpers.py`'s log-space recursions)."""
    uniform = np.full(log_b.shape[-1], 1.0 / log_b.shape[-1])
    runs = [numpy_forward_backward(uniform, transition, row) for row in log_b]
    return (np.stack([r["filtered"] for r in runs]),
            np.stack([r["smoothed"] for r in runs]),
            np.stack([numpy_viterbi(uniform, transition, row)
                      for row in log_b]),
            np.array([r["log_likelihood"] for r in runs]))


def inference(layer, x, mask=None):
    """The four methods' results: filter, smoother, Viterbi, log p(x)."""
    return (layer.regime_probabilities(x, mask=mask),
            layer.regime_probabilities(x, mask=mask, smoothed=True),
            layer.most_likely_regimes(x, mask=mask),
            layer.regime_log_likelihood(x, mask=mask))


def float32_data(shape, seed):
    """Normal data representable in float32 (the layer's input dtype), as
    float64."""
    x = np.random.default_rng(seed).normal(size=shape).astype("float32")
    return x.astype("float64")


# (HMMSwitch arguments, F): order 0 and 1, both covariances.
CASES = [
    (dict(order=0), 1),
    (dict(order=1), 2),
    (dict(order=0, covariance="full"), 2),
    (dict(order=1, covariance="full"), 2),
]


def case_id(case):
    kwargs, features = case
    return f"order{kwargs['order']}-{kwargs.get('covariance', 'diagonal')}" \
        f"-F{features}"


def random_layer(kwargs, features, seed, **layer_kwargs):
    layer = hmm_layer(HMMSwitch(**kwargs), **layer_kwargs)
    layer.build((None, None, features))
    randomize(layer.cell.switch, seed, scales=SMALL_AR)
    return layer


# ------------------------------------------- 1. against NumPy references
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_inference_against_numpy_forward_backward_and_viterbi(case):
    kwargs, features = case
    x = float32_data((3, 12, features), seed=1)
    layer = random_layer(kwargs, features, seed=2)
    model = model_from_weights(layer.cell.switch)
    want_filter, want_smooth, want_path, want_ll = references(
        emissions(x, model), model["P"])
    got_filter, got_smooth, got_path, got_ll = inference(layer, x)
    assert got_filter.shape == got_smooth.shape == (3, 12, K)
    assert got_path.shape == (3, 12) and got_ll.shape == (3,)
    np.testing.assert_allclose(got_filter, want_filter, **TOL)
    np.testing.assert_allclose(got_smooth, want_smooth, **TOL)
    np.testing.assert_array_equal(got_path, want_path)
    np.testing.assert_allclose(got_ll, want_ll, **TOL)
    # The smoother differs from the filter (it reads later steps) but for
    # the last step.
    assert np.abs(got_smooth - got_filter)[:, :-1].max() > 1e-3
    np.testing.assert_allclose(got_smooth[:, -1], got_filter[:, -1], **TOL)


# ------------------------------------------------------ 2. against tfp
def tfp_hmm(x, model, diagonal, steps=None):
    """tfp's HMM of the batch x (N, T, F): uniform initial state, P, and a
    time-varying observation distribution of batch shape (N, T, K)."""
    mean, tril = emission_moments(x, model)
    tril = np.broadcast_to(tril, mean.shape + mean.shape[-1:])
    if diagonal:
        observation = tfd.Independent(tfd.Normal(
            loc=mean, scale=np.diagonal(tril, axis1=-2, axis2=-1).copy()), 1)
    else:
        observation = tfd.MultivariateNormalTriL(loc=mean,
                                                 scale_tril=tril.copy())
    k = mean.shape[2]
    return tfd.HiddenMarkovModel(
        initial_distribution=tfd.Categorical(probs=np.full(k, 1.0 / k)),
        transition_distribution=tfd.Categorical(probs=model["P"]),
        observation_distribution=observation,
        num_steps=x.shape[1] if steps is None else steps,
        time_varying_observation_distribution=True)


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[3]],
                         ids=case_id)
def test_inference_against_tfp_hidden_markov_model(case):
    kwargs, features = case
    diagonal = kwargs.get("covariance", "diagonal") == "diagonal"
    lengths = np.array([12, 8, 5])
    x = float32_data((3, 12, features), seed=5)
    valid = np.arange(12) < lengths[:, None]
    x = np.where(valid[..., None], x, 0.0)
    layer = random_layer(kwargs, features, seed=6)
    model = model_from_weights(layer.cell.switch)

    # Unmasked.
    hmm = tfp_hmm(x, model, diagonal)
    got_filter, got_smooth, got_path, got_ll = inference(layer, x)
    np.testing.assert_allclose(got_ll, np.asarray(hmm.log_prob(x)), **TOL)
    np.testing.assert_allclose(
        got_smooth, np.asarray(hmm.posterior_marginals(x).probs_parameter()),
        **TOL)
    np.testing.assert_array_equal(got_path,
                                  np.asarray(hmm.posterior_mode(x)))

    # Right-padded: tfp's `mask` is True where an observation is masked
    # out (it then emits 1 there, the chain still moving on), so its
    # log_prob and marginals at the valid steps are the unpadded ones.
    # Its Viterbi over trailing masked steps may pick another last state,
    # so the path is compared with tfp on each unpadded sequence.
    got_filter, got_smooth, got_path, got_ll = inference(layer, x, valid)
    np.testing.assert_allclose(
        got_ll, np.asarray(hmm.log_prob(x, mask=~valid)), **TOL)
    want_smooth = np.asarray(hmm.posterior_marginals(
        x, mask=~valid).probs_parameter())
    np.testing.assert_allclose(got_smooth[valid], want_smooth[valid], **TOL)
    for row, length in enumerate(lengths):
        short = x[row:row + 1, :length]
        mode = np.asarray(
            tfp_hmm(short, model, diagonal).posterior_mode(short))
        np.testing.assert_array_equal(got_path[row, :length], mode[0])
        assert np.all(got_path[row, length:] == -1)


# ------------------------------------------------------ 3. the layer's q
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_filter_and_likelihood_are_the_layers_q_and_loss(masked):
    x = float32_data((3, 12, 2), seed=7)
    mask = None
    if masked:
        mask = np.ones((3, 12), bool)
        mask[0, 9:] = False       # right padding
        mask[1, :4] = False       # left padding
        mask[2, 5:7] = False      # a hole
        # Garbage at the masked steps: neither the layer nor the methods
        # may read it.
        x = np.where(mask[..., None], x, np.nan)
    weight = 0.7
    layer = random_layer(dict(), 2, seed=8, input_likelihood_weight=weight)
    _, q, _ = layer(x.astype("float32"), mask=mask, training=False)
    loss = float(to_numpy(layer.losses[-1]))
    filtered = layer.regime_probabilities(x, mask=mask)
    smoothed = layer.regime_probabilities(x, mask=mask, smoothed=True)
    log_likelihood = layer.regime_log_likelihood(x, mask=mask)
    # Everywhere, masked steps included (both repeat the last valid step).
    np.testing.assert_allclose(filtered, np.asarray(q), **LAYER_TOL)
    assert np.isfinite(loss) and np.all(np.isfinite(log_likelihood))
    valid = np.ones((3, 12), bool) if mask is None else mask
    last = 11 - np.argmax(valid[:, ::-1], axis=1)
    rows = np.arange(3)
    np.testing.assert_allclose(smoothed[rows, last], filtered[rows, last],
                               **TOL)
    if mask is None:
        np.testing.assert_allclose(
            log_likelihood.mean() / 12 * -weight, loss, **LAYER_TOL)
    else:
        np.testing.assert_allclose(
            log_likelihood.sum(), -loss * valid.sum() / weight, **LAYER_TOL)


# ---------------------------------------------------------------- 4. masks
def pad(sequences, mask, garbage):
    """The sequences (list of (T_i, F)) laid at the True steps of mask,
    `garbage` elsewhere."""
    x = np.full(mask.shape + (sequences[0].shape[-1],), garbage)
    for row, sequence in enumerate(sequences):
        x[row, mask[row]] = sequence
    return x


@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=case_id)
@pytest.mark.parametrize("garbage", [1e6, np.nan], ids=["1e6", "nan"])
def test_padding_gives_the_unpadded_values(case, garbage):
    kwargs, features = case
    layer = random_layer(kwargs, features, seed=9)
    lengths = [10, 7, 4]
    data = float32_data((3, 10, features), seed=10)
    sequences = [data[i, :n] for i, n in enumerate(lengths)]
    alone = [inference(layer, s[None]) for s in sequences]
    steps = 12
    right = np.arange(steps) < np.array(lengths)[:, None]
    left = right[:, ::-1]
    holes = np.zeros((3, steps), bool)
    for row, n in enumerate(lengths):
        holes[row, np.sort(np.random.default_rng(row).choice(
            np.arange(1, steps), n, replace=False))] = True
    uniform = np.full(K, 1.0 / K)
    for mask in (right, left, holes):
        x = pad(sequences, mask, garbage)
        got = inference(layer, x, mask)
        for row in range(3):
            valid = mask[row]
            for value, want in zip(got[:2], alone[row][:2]):
                np.testing.assert_allclose(value[row, valid], want[0], **TOL)
                # Masked steps repeat the last valid step's probabilities
                # (uniform before the first valid one).
                previous = uniform
                for t in range(steps):
                    if not valid[t]:
                        np.testing.assert_array_equal(value[row, t],
                                                      previous)
                    previous = value[row, t]
            np.testing.assert_array_equal(got[2][row, valid], alone[row][2][0])
            assert np.all(got[2][row, ~valid] == -1)
            np.testing.assert_allclose(got[3][row], alone[row][3][0], **TOL)
        assert np.all(np.isfinite(got[0])) and np.all(np.isfinite(got[3]))


def test_a_fully_masked_sequence_is_uniform_and_has_log_likelihood_zero():
    layer = random_layer(dict(), 1, seed=11)
    x = float32_data((2, 6, 1), seed=12)
    mask = np.ones((2, 6), bool)
    mask[1] = False
    filtered, smoothed, path, log_likelihood = inference(layer, x, mask)
    np.testing.assert_allclose(filtered[1], np.full((6, K), 1.0 / K))
    np.testing.assert_allclose(smoothed[1], np.full((6, K), 1.0 / K))
    assert np.all(path[1] == -1)
    assert log_likelihood[1] == 0.0
    np.testing.assert_allclose(
        log_likelihood[0], layer.regime_log_likelihood(x[:1])[0], **TOL)


# ---------------------------------- 5. MarkovSwitchingAR's true parameters
def test_true_parameters_give_the_bayes_filter_smoother_and_viterbi():
    process = MarkovSwitchingAR()
    x, _ = process.sample(4, 200, seed=13)
    layer = MarkovLSTM(2, num_states=3, switch="hmm")
    layer.build(x.shape)
    cell = layer.cell
    cell.switch.level.assign(process.means[:, None])
    cell.switch.persistence.assign(np.arctanh(process.coefficients)[:, None])
    cell.switch.log_scale.assign(np.log(process.scales)[:, None])
    cell.switch.transition.assign(np.log(process.transition_matrix))
    # The process's emissions from its parameters (float64).
    series = x[..., 0].astype("float64")
    mean = np.empty(series.shape + (3,))
    scale = np.empty_like(mean)
    mean[:, 0] = process.means
    scale[:, 0] = process.scales / np.sqrt(1 - process.coefficients ** 2)
    mean[:, 1:] = process.means + process.coefficients * (
        series[:, :-1, None] - process.means)
    scale[:, 1:] = process.scales
    log_b = (-0.5 * ((series[..., None] - mean) / scale) ** 2
             - np.log(scale) - 0.5 * np.log(2 * np.pi))
    want_filter, want_smooth, want_path, want_ll = references(
        log_b, process.transition_matrix)
    np.testing.assert_allclose(want_filter, process.filter(x), atol=1e-12)
    got_filter, got_smooth, got_path, got_ll = inference(layer, x)
    np.testing.assert_allclose(got_filter, process.filter(x), **TOL)
    np.testing.assert_allclose(got_smooth, want_smooth, **TOL)
    np.testing.assert_array_equal(got_path, want_path)
    np.testing.assert_allclose(got_ll, want_ll, **TOL)


# ---------------------------------------------------------------- 6. inputs
def test_datasets_and_tensors_give_the_arrays_values():
    x = float32_data((5, 9, 1), seed=14).astype("float32")
    y = np.zeros((5, 1), "float32")
    layer = random_layer(dict(), 1, seed=15)
    want = inference(layer, x)
    for source in (tf.data.Dataset.from_tensor_slices(x).batch(2),
                   tf.data.Dataset.from_tensor_slices((x, y)).batch(2),
                   keras.ops.convert_to_tensor(x)):    # The backend's.
        got = inference(layer, source)
        for value, expected in zip(got, want):
            assert value.shape == expected.shape
            np.testing.assert_allclose(value, expected, rtol=1e-12,
                                       atol=1e-12)


def test_an_unbuilt_layer_is_built_by_the_methods():
    layer = MarkovLSTM(2, num_states=2, switch="hmm")
    x = float32_data((2, 5, 3), seed=16)
    assert layer.regime_probabilities(x).shape == (2, 5, 2)
    assert layer.built and layer.cell.switch.input_dim == 3


def test_bad_inputs_fail_clearly():
    x = float32_data((2, 5, 1), seed=17)
    linear = MarkovLSTM(2, num_states=2)
    for method in (linear.regime_probabilities, linear.most_likely_regimes,
                   linear.regime_log_likelihood):
        with pytest.raises(ValueError, match="needs the hmm switch"):
            method(x)
    layer = MarkovLSTM(2, num_states=2, switch="hmm")
    layer.build(x.shape)
    for method in (layer.regime_probabilities, layer.most_likely_regimes,
                   layer.regime_log_likelihood):
        with pytest.raises(ValueError,
                           match=re.escape("(batch, time, features)")):
            method(x[..., 0])
        with pytest.raises(ValueError, match="features"):
            method(np.zeros((2, 5, 2)))
        with pytest.raises(ValueError, match="mask"):
            method(x, mask=np.ones((2, 4), bool))
        with pytest.raises(ValueError, match="mask"):
            method(tf.data.Dataset.from_tensor_slices(x).batch(1),
                   mask=np.ones((2, 5), bool))


# ---------------------------------------------------------- 7. go_backwards
def test_go_backwards_gives_the_layers_q_in_processing_order():
    x = float32_data((3, 10, 2), seed=18)
    mask = np.ones((3, 10), bool)
    mask[1, 7:] = False
    backward = random_layer(dict(), 2, seed=19, go_backwards=True)
    forward = hmm_layer(HMMSwitch())
    forward.build((None, None, 2))
    forward.set_weights(backward.get_weights())
    for m in (None, mask):
        _, q, _ = backward(x.astype("float32"), mask=m, training=False)
        got = inference(backward, x, m)
        np.testing.assert_allclose(got[0], np.asarray(q), **LAYER_TOL)
        # The forward layer on the reversed sequences.
        want = inference(forward, x[:, ::-1],
                         None if m is None else m[:, ::-1])
        for value, expected in zip(got, want):
            np.testing.assert_allclose(value, expected, **TOL)
