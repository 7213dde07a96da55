"""Tests of the predictive switch (`switch="predictive"`) and its input
likelihood loss, against the equations written out in NumPy (float64).

float32 bounds: the NumPy references run in float64; the layer computes in
float32 over a handful of steps with O(1) values, so 1e-4 (relative and
absolute) covers its rounding on any device, TF32 matmuls aside (the
autouse fixture of conftest.py turns TF32 off).
"""

import keras
import numpy as np
import pytest

from _helpers import (logsumexp, normal_log_pdf, numpy_switched_lstms,
                      randomize, to_numpy, assert_input_likelihood_trains)
from keras_mrnn import MarkovLSTM, MarkovLSTMCell
from keras_mrnn.switches import PredictiveSwitch

TOL = dict(rtol=1e-4, atol=1e-4)


# `randomize(cell, names=RANDOM)`: random biases and input scales, so
# that no term is trivially zero.
RANDOM = ("bias", "switch_bias", "switch_mean_bias", "switch_log_scale")


def numpy_predictive_step(x, h, c, cell):
    """One step from the equations: q(z_t) ∝ prior(z_t | h) N(x_t; mu_k, s_k).

    Returns h, c, the switch logits (log prior + log density), the one-hot
    argmax switch and log p(x_t | past).
    """
    k_states, features = cell.num_states, x.shape[-1]
    prior = (h @ cell.switch.recurrent_kernel.numpy().astype("float64")
             + cell.switch.bias.numpy())
    mean = (h @ cell.switch.mean_kernel.numpy().astype("float64")
            + cell.switch.mean_bias.numpy()).reshape(-1, k_states, features)
    scale = np.exp(cell.switch.log_scale.numpy().astype("float64"))
    log_density = normal_log_pdf(x[:, None, :], mean, scale).sum(axis=-1)
    logits = prior + log_density
    log_evidence = logsumexp(logits) - logsumexp(prior)
    z = np.eye(k_states)[logits.argmax(-1)]
    h_new, c_new = numpy_switched_lstms(x, h, c, z, cell)
    return h_new, c_new, logits, z, log_evidence


def test_one_step_matches_numpy_bayes_rule():
    rng = np.random.default_rng(0)
    cell = MarkovLSTMCell(5, num_states=3, switch="predictive",
                          output_switches=True)
    cell.build((4, 2))
    randomize(cell, names=RANDOM)
    # The input enters as a density: no switch_kernel.
    assert not hasattr(cell, "switch_kernel")
    x = rng.normal(size=(4, 2))
    h = rng.normal(size=(4, 5)) * 0.5
    c = rng.normal(size=(4, 5))
    output, (h_new, c_new) = cell(
        x.astype("float32"), [h.astype("float32"), c.astype("float32")],
        training=False)
    want_h, want_c, logits, z, log_evidence = numpy_predictive_step(
        x, h, c, cell)
    # Packed output: [h, logits, z, log p(x_t | past)].
    assert cell.output_size == 5 + 3 + 3 + 1
    np.testing.assert_allclose(output[:, :5], want_h, **TOL)
    np.testing.assert_allclose(output[:, 5:8], logits, **TOL)
    np.testing.assert_allclose(output[:, 8:11], z)
    np.testing.assert_allclose(output[:, 11], log_evidence, **TOL)
    np.testing.assert_allclose(h_new, want_h, **TOL)
    np.testing.assert_allclose(c_new, want_c, **TOL)


@pytest.mark.parametrize("masked", [False, True])
def test_input_likelihood_loss_and_switches_over_a_sequence(masked):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 2))
    mask = np.ones((3, 6), bool)
    if masked:
        mask[0, 4:] = False
        mask[2, 3:] = False
    layer = MarkovLSTM(4, num_states=3, switch="predictive",
                       input_likelihood_weight=0.7, return_switches=True,
                       return_sequences=True)
    layer.build(x.shape)
    randomize(layer.cell, seed=2, names=RANDOM)
    _, q_seq, z_seq = [np.asarray(a) for a in layer(
        x.astype("float32"), mask=mask, training=False)]
    h = np.zeros((3, 4))
    c = np.zeros((3, 4))
    log_evidences = []
    for t in range(6):
        h_new, c_new, logits, z, log_evidence = numpy_predictive_step(
            x[:, t], h, c, layer.cell)
        valid = mask[:, t]
        np.testing.assert_allclose(
            q_seq[valid, t], np.exp(logits - logsumexp(logits)[:, None])[
                valid], **TOL)
        np.testing.assert_allclose(z_seq[valid, t], z[valid])
        # Masked steps carry the state over.
        h = np.where(valid[:, None], h_new, h)
        c = np.where(valid[:, None], c_new, c)
        log_evidences.append(log_evidence)
    log_evidences = np.stack(log_evidences, 1)
    # The added loss: weight x the mean over valid steps of -log p(x_t|past).
    want = -0.7 * log_evidences[mask].mean()
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(to_numpy(layer.losses[0])), want,
                               **TOL)


def test_one_state_predictive_is_still_an_ordinary_lstm():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    markov = MarkovLSTM(4, num_states=1, switch="predictive",
                        input_likelihood_weight=1.0, return_sequences=True)
    markov.build(x.shape)
    lstm = keras.layers.LSTM(4, return_sequences=True)
    lstm.build(x.shape)
    lstm.set_weights(markov.cell.lstm_weights(0))
    np.testing.assert_allclose(markov(x, training=True), lstm(x), **TOL)


def test_input_likelihood_trains_the_predictive_densities():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 5, 2)).astype("float32")
    layer = MarkovLSTM(3, num_states=2, switch="predictive",
                       input_likelihood_weight=1.0, seed=0)
    layer.build(x.shape)
    cell = layer.cell
    weights = [cell.switch.mean_kernel, cell.switch.mean_bias,
               cell.switch.log_scale, cell.switch.recurrent_kernel,
               cell.recurrent_kernel]
    assert_input_likelihood_trains(layer, x, weights)


def test_predictive_layer_saves_and_loads(tmp_path):
    x = np.random.default_rng(5).normal(size=(2, 4, 3)).astype("float32")
    inputs = keras.Input((None, 3))
    h, q, z = MarkovLSTM(4, num_states=2, switch="predictive",
                         input_likelihood_weight=0.5, return_switches=True,
                         seed=1)(inputs)
    model = keras.Model(inputs, [h, q])
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.layers[1]
    assert isinstance(layer.cell.switch, PredictiveSwitch)
    assert layer.input_likelihood_weight == 0.5
    for got, want in zip(loaded(x), model(x)):
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("kwargs, words", [
    (dict(switch="bayes"), "switch"),
    (dict(input_likelihood_weight=1.0), "switch='predictive'"),
    (dict(switch="predictive", input_likelihood_weight=-1.0),
     "input_likelihood_weight"),
])
def test_bad_predictive_arguments_fail_clearly(kwargs, words):
    with pytest.raises(ValueError, match=words):
        MarkovLSTM(4, **kwargs)


def test_predictive_switch_runs_under_mixed_precision():
    # The prior logits come in float16 and the density in float32: they
    # used to meet in an add that TensorFlow refuses.
    x = np.random.default_rng(6).normal(size=(2, 6, 3)).astype("float32")
    layer = MarkovLSTM(4, num_states=2, switch="predictive",
                       return_switches=True, dtype="mixed_float16")
    h, q, z = layer(x, training=True)
    dtype = keras.backend.standardize_dtype
    assert dtype(h.dtype) == "float16" and dtype(q.dtype) == "float32"
    assert np.all(np.isfinite(to_numpy(q)))
    assert np.isfinite(float(to_numpy(layer.losses[0])))
