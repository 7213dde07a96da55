"""Tests of MarkovLSTMCell and MarkovLSTM against independent references."""

import numpy as np
import pytest
import keras

import keras_mrnn
from _helpers import (
    BACKEND, numpy_switched_lstms, randomize, softmax, tensorflow_only,
    to_numpy, value_and_gradients,
)
from keras_mrnn import MarkovLSTM, MarkovLSTMCell


def numpy_markov_step(x, h, c, z_prev, cell, switch="argmax"):
    """One Markov LSTM step from the equations of REFERENCES.md, in NumPy,
    with the K LSTMs taken one by one from `lstm_weights` and the switch
    weights read from the trailing columns."""
    K = cell.num_states
    logits = (x @ cell.switch.kernel.numpy()
              + h @ cell.switch.recurrent_kernel.numpy()
              + cell.switch.bias.numpy())
    if z_prev is not None:
        logits = logits + z_prev @ cell.switch.transition_kernel.numpy()
    q = softmax(logits)
    if switch == "argmax":
        z = np.eye(K)[q.argmax(-1)]
    else:
        z = q
    h_new, c_new = numpy_switched_lstms(x, h, c, z, cell)
    return h_new, c_new, q, z, logits


# `randomize(cell, scale=1, names=BIASES)`: N(0, 1) biases, the LSTMs'
# and the switch's.
BIASES = ("bias", "switch_bias")


# ---------------------------------------------------------------- the maths
@pytest.mark.parametrize("training", [False, True])
def test_one_state_is_an_ordinary_lstm(training):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7, 3)).astype("float32")
    markov = keras.layers.RNN(
        MarkovLSTMCell(6, num_states=1, seed=1), return_sequences=True,
        return_state=True)
    markov.build(x.shape)
    randomize(markov.cell, scale=1, names=BIASES)
    lstm = keras.layers.RNN(
        keras.layers.LSTMCell(6), return_sequences=True, return_state=True)
    lstm.build(x.shape)
    lstm.cell.set_weights(markov.cell.lstm_weights(0))
    got = markov(x, training=training)
    want = lstm(x, training=training)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_one_state_layer_matches_keras_lstm_layer(kernel_tol):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 9, 5)).astype("float32")
    markov = MarkovLSTM(8, num_states=1, return_sequences=True)
    markov.build(x.shape)
    randomize(markov.cell, scale=1, names=BIASES)
    lstm = keras.layers.LSTM(8, return_sequences=True)
    lstm.build(x.shape)
    lstm.set_weights(markov.cell.lstm_weights(0))
    # On a GPU Keras's LSTM runs cuDNN: another kernel path (conftest).
    np.testing.assert_allclose(markov(x), lstm(x),
                               **kernel_tol(rtol=1e-5, atol=1e-5))


@pytest.mark.parametrize("switch", ["argmax", "expected"])
def test_one_step_matches_numpy_equations(switch):
    rng = np.random.default_rng(2)
    cell = MarkovLSTMCell(5, num_states=3, inference_switch=switch,
                          output_switches=True)
    cell.build((4, 6))
    randomize(cell, scale=1, names=BIASES)
    x = rng.normal(size=(4, 6)).astype("float32")
    h = rng.normal(size=(4, 5)).astype("float32")
    c = rng.normal(size=(4, 5)).astype("float32")
    output, (h_new, c_new) = cell(x, [h, c], training=False)
    want_h, want_c, _, want_z, want_logits = numpy_markov_step(
        x, h, c, None, cell, switch)
    np.testing.assert_allclose(h_new, want_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_new, want_c, rtol=1e-5, atol=1e-5)
    # Packed output: [h, logits, z].
    np.testing.assert_allclose(output[:, :5], want_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(output[:, 5:8], want_logits, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(output[:, 8:], want_z, rtol=1e-5, atol=1e-5)


def test_markov_transition_matches_numpy_over_two_steps():
    rng = np.random.default_rng(3)
    cell = MarkovLSTMCell(4, num_states=3, markov_transition=True,
                          inference_switch="expected")
    cell.build((2, 3))
    randomize(cell, scale=1, names=BIASES)
    cell.switch.transition_kernel.assign(
        rng.normal(size=(3, 3)).astype("float32") * 3)
    assert cell.state_size == [4, 4, 3]
    x = rng.normal(size=(2, 2, 3)).astype("float32")
    h = np.zeros((2, 4), "float32")
    c = np.zeros((2, 4), "float32")
    z = np.zeros((2, 3), "float32")
    states = [h, c, z]
    for t in range(2):
        _, states = cell(x[:, t], states, training=False)
        h, c, _, z, _ = numpy_markov_step(x[:, t], h, c, z, cell, "expected")
        np.testing.assert_allclose(states[0], h, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(states[2], z, rtol=1e-5, atol=1e-5)


def test_layer_switch_outputs_match_numpy_over_a_sequence():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 6, 4)).astype("float32")
    layer = MarkovLSTM(5, num_states=3, return_switches=True,
                       return_sequences=True)
    layer.build(x.shape)
    randomize(layer.cell, scale=1, names=BIASES)
    h_seq, q_seq, z_seq = layer(x, training=False)
    h = np.zeros((3, 5), "float32")
    c = np.zeros((3, 5), "float32")
    for t in range(6):
        h, c, q, z, _ = numpy_markov_step(x[:, t], h, c, None, layer.cell)
        np.testing.assert_allclose(h_seq[:, t], h, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(q_seq[:, t], q, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(z_seq[:, t], z)


# ------------------------------------------------------------- the switch
def test_training_switches_are_soft_samples_on_the_simplex():
    x = np.random.default_rng(5).normal(size=(16, 10, 3)).astype("float32")
    layer = MarkovLSTM(4, num_states=5, temperature=1.0, seed=3,
                       straight_through=False, return_switches=True)
    _, q, z = layer(x, training=True)
    z = to_numpy(z)
    assert np.all(z >= 0)
    np.testing.assert_allclose(z.sum(-1), 1.0, rtol=1e-5)
    # Relaxed, not one-hot, at temperature 1.
    assert np.any((z > 1e-3) & (z < 1 - 1e-3))
    np.testing.assert_allclose(to_numpy(q).sum(-1), 1.0, rtol=1e-5)


def test_inference_switch_modes():
    x = np.random.default_rng(6).normal(size=(16, 10, 3)).astype("float32")
    for mode in ["argmax", "sample"]:
        layer = MarkovLSTM(4, num_states=5, inference_switch=mode, seed=1,
                           return_switches=True)
        _, q, z = layer(x, training=False)
        z = to_numpy(z)
        assert set(np.unique(z)) <= {0.0, 1.0}
        np.testing.assert_array_equal(z.sum(-1), 1.0)
        if mode == "argmax":
            np.testing.assert_array_equal(
                z.argmax(-1), to_numpy(q).argmax(-1))
    layer = MarkovLSTM(4, num_states=5, inference_switch="expected",
                       return_switches=True)
    _, q, z = layer(x, training=False)
    np.testing.assert_allclose(z, q, rtol=1e-5, atol=1e-6)


def test_straight_through_is_one_hot_with_gradient():
    x = np.random.default_rng(7).normal(size=(8, 5, 3)).astype("float32")
    layer = MarkovLSTM(4, num_states=3, straight_through=True, seed=0,
                       return_switches=True)
    layer.build(x.shape)

    def loss_fn():
        h, _, z = layer(x, training=True)
        return keras.ops.sum(h ** 2), z

    _, (grad,), z = value_and_gradients(
        loss_fn, [layer.cell.switch.kernel], has_aux=True)
    assert set(np.unique(z)) <= {0.0, 1.0}
    assert np.abs(grad).sum() > 0  # the switch learns through the hard z


def test_fixed_seed_reproduces_and_different_seeds_differ():
    x = np.random.default_rng(8).normal(size=(8, 12, 3)).astype("float32")

    def run(seed):
        layer = MarkovLSTM(4, num_states=4, seed=seed, return_switches=True,
                           kernel_initializer=keras.initializers.GlorotUniform(0),
                           recurrent_initializer=keras.initializers.Orthogonal(0))
        return to_numpy(layer(x, training=True)[2])

    np.testing.assert_array_equal(run(11), run(11))
    assert not np.allclose(run(11), run(12))


def test_noise_differs_between_steps_and_calls():
    """The seed generator advances: no int seed reused inside the loop."""
    x = np.zeros((4, 6, 2), "float32")
    layer = MarkovLSTM(3, num_states=4, seed=0, return_switches=True,
                       recurrent_initializer="zeros")
    # Zero input and zero recurrent weights: logits are equal at every
    # step, so any difference between steps comes from the noise.
    z1 = to_numpy(layer(x, training=True)[2])
    z2 = to_numpy(layer(x, training=True)[2])
    assert not np.allclose(z1[:, 0], z1[:, 1])
    assert not np.allclose(z1, z2)


# ---------------------------------------------------- Keras integration
def test_gradients_reach_every_lstm_and_the_switch():
    x = np.random.default_rng(9).normal(size=(8, 6, 3)).astype("float32")
    layer = MarkovLSTM(4, num_states=3, seed=0)
    layer.build(x.shape)
    cell = layer.cell
    _, grads = value_and_gradients(
        lambda: keras.ops.sum(layer(x, training=True) ** 2),
        [cell.kernel, cell.recurrent_kernel, cell.bias, cell.switch.kernel,
         cell.switch.recurrent_kernel, cell.switch.bias])
    K, m = 3, 4
    for grad in grads[:3]:
        for gate in range(4):
            for k in range(K):
                start = gate * K * m + k * m
                block = grad[..., start:start + m]
                assert np.abs(block).sum() > 0, (gate, k)
    for grad in grads[3:]:
        assert np.abs(grad).sum() > 0


def test_entropy_weight_adds_the_entropy_loss():
    x = np.random.default_rng(10).normal(size=(6, 7, 3)).astype("float32")
    layer = MarkovLSTM(4, num_states=3, entropy_weight=0.5,
                       return_switches=True)
    _, q, _ = layer(x, training=False)
    q = to_numpy(q)
    entropy = -(q * np.log(q)).sum(-1).mean()
    assert len(layer.losses) == 1
    np.testing.assert_allclose(layer.losses[0], -0.5 * entropy, rtol=1e-5)


def test_entropy_loss_ignores_masked_steps():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    mask = np.ones((4, 6), bool)
    mask[:, 4:] = False
    layer = MarkovLSTM(4, num_states=3, entropy_weight=1.0,
                       return_switches=True, return_sequences=True)
    _, q, _ = layer(x, mask=mask, training=False)
    q = to_numpy(q)[:, :4]
    entropy = -(q * np.log(q)).sum(-1).mean()
    np.testing.assert_allclose(layer.losses[0], -entropy, rtol=1e-5)


def test_masking_keeps_state_through_padded_steps():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(3, 5, 2)).astype("float32")
    padded = np.concatenate([x, np.zeros((3, 3, 2), "float32")], axis=1)
    inputs = keras.Input((None, 2))
    masked = keras.layers.Masking(0.0)(inputs)
    layer = MarkovLSTM(4, num_states=2)
    model = keras.Model(inputs, layer(masked))
    np.testing.assert_allclose(model.predict(padded, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)


def test_stacked_bidirectional_functional_and_return_state():
    x = np.random.default_rng(13).normal(size=(4, 6, 3)).astype("float32")
    inputs = keras.Input((6, 3))
    seq = MarkovLSTM(5, num_states=2, return_sequences=True)(inputs)
    seq = keras.layers.Bidirectional(
        MarkovLSTM(4, num_states=2, return_sequences=True))(seq)
    out, h, c = MarkovLSTM(3, num_states=2, return_state=True,
                           go_backwards=True)(seq)
    model = keras.Model(inputs, [out, h, c])
    out, h, c = model.predict(x, verbose=0)
    assert out.shape == (4, 3) and h.shape == (4, 3) and c.shape == (4, 3)
    np.testing.assert_allclose(out, h)


def test_go_backwards_equals_reversed_input():
    x = np.random.default_rng(14).normal(size=(3, 5, 2)).astype("float32")
    forward = MarkovLSTM(4, num_states=3)
    forward.build(x.shape)
    backward = MarkovLSTM(4, num_states=3, go_backwards=True)
    backward.build(x.shape)
    backward.set_weights(forward.get_weights())
    np.testing.assert_allclose(backward(x), forward(x[:, ::-1]), atol=1e-6)


@pytest.mark.parametrize("use_layer", [
    True,
    pytest.param(False, marks=pytest.mark.skipif(
        BACKEND == "jax",
        reason="Keras's own keras.layers.RNN(stateful=True) does not carry "
        "its states from one predict call to the next on JAX (neither with "
        "Keras's LSTMCell): the use_layer=True case checks MarkovLSTM's "
        "stateful chunks there")),
])
def test_stateful_chunks_equal_one_pass(use_layer):
    rng = np.random.default_rng(15)
    x = rng.normal(size=(4, 12, 3)).astype("float32")

    def make(batch_shape, stateful):
        if use_layer:
            layer = MarkovLSTM(5, num_states=3, return_sequences=True,
                               stateful=stateful, markov_transition=True)
        else:
            layer = keras.layers.RNN(
                MarkovLSTMCell(5, num_states=3, markov_transition=True),
                return_sequences=True, stateful=stateful)
        return keras.Sequential([keras.Input(batch_shape=batch_shape), layer])

    whole = make((4, 12, 3), False)
    chunked = make((4, 4, 3), True)
    chunked.set_weights(whole.get_weights())
    want = whole.predict(x, verbose=0)
    got = np.concatenate(
        [chunked.predict(x[:, i:i + 4], verbose=0) for i in (0, 4, 8)], 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    keras_mrnn.reset_states(chunked)
    np.testing.assert_allclose(chunked.predict(x[:, :4], verbose=0),
                               want[:, :4], rtol=1e-5, atol=1e-5)


def test_stateful_sequential_model_trains_with_fit():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(32, 5, 1)).astype("float32")
    y = x.sum(axis=1)
    if BACKEND == "jax":
        # A bare cell in keras.layers.RNN refuses to draw its training
        # noise inside JAX's scan (where its seed generator cannot
        # advance), and that layer does not carry its states between
        # batches on JAX: MarkovLSTM is the layer for JAX.
        recurrent = MarkovLSTM(8, num_states=2, seed=0, stateful=True)
    else:
        recurrent = keras.layers.RNN(
            MarkovLSTMCell(8, num_states=2, seed=0), stateful=True)
    model = keras.Sequential([
        keras.Input(batch_shape=(8, 5, 1)),
        recurrent,
        keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    history = model.fit(x, y, batch_size=8, epochs=8, shuffle=False,
                        verbose=0,
                        callbacks=[keras.callbacks.LambdaCallback(
                            on_epoch_begin=lambda *_:
                            keras_mrnn.reset_states(model))])
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]


def test_dropout_only_in_training():
    x = np.random.default_rng(17).normal(size=(8, 6, 3)).astype("float32")
    layer = MarkovLSTM(6, num_states=2, dropout=0.5, recurrent_dropout=0.5,
                       inference_switch="expected", seed=0)
    layer.build(x.shape)
    np.testing.assert_allclose(layer(x, training=False),
                               layer(x, training=False))
    assert not np.allclose(layer(x, training=True), layer(x, training=True))


# -------------------------------------------------------- temperature
@tensorflow_only(
    "checks that one XLA-compiled tf.function reads the temperature "
    "variable (one trace for two temperatures); on every backend "
    "test_callbacks.py::test_scheduler_changes_temperature_inside_compiled_"
    "fit checks that compiled fit steps read the scheduled temperature")
def test_temperature_is_read_by_a_compiled_step():
    import tensorflow as tf

    x = np.random.default_rng(18).normal(size=(32, 8, 3)).astype("float32")
    layer = MarkovLSTM(4, num_states=4, seed=0, return_switches=True,
                       straight_through=False)
    layer.build(x.shape)

    @tf.function(jit_compile=True)
    def switches(inputs):
        return layer(inputs, training=True)[2]

    layer.temperature = 100.0
    hot = switches(x).numpy()
    layer.temperature = 0.01
    cold = switches(x).numpy()
    assert hot.max() < 0.6  # near uniform
    assert np.median(cold.max(-1)) > 0.99  # near one-hot
    assert switches.experimental_get_tracing_count() == 1


# ------------------------------------------------------------- saving
def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(20)
    x = rng.normal(size=(6, 7, 3)).astype("float32")
    inputs = keras.Input((7, 3))
    h, q, z = MarkovLSTM(5, num_states=3, return_switches=True,
                         entropy_weight=0.01, markov_transition=True,
                         straight_through=True, dropout=0.1,
                         return_sequences=True)(inputs)
    out = keras.layers.RNN(MarkovLSTMCell(4, num_states=2,
                                          inference_switch="expected"))(h)
    model = keras.Model(inputs, [out, q, z])
    model.layers[1].temperature = 0.37
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(model.predict(x, verbose=0),
                    loaded.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert loaded.layers[1].temperature == pytest.approx(0.37)
    assert loaded.layers[1].get_config() == model.layers[1].get_config()
    assert loaded.layers[2].cell.inference_switch == "expected"


def test_config_round_trip_keeps_every_argument():
    layer = MarkovLSTM(
        7, num_states=3, temperature=2.5, straight_through=True,
        inference_switch="sample", markov_transition=True,
        activation="relu", recurrent_activation="hard_sigmoid",
        use_bias=False, unit_forget_bias=False, dropout=0.2,
        recurrent_dropout=0.1, seed=5, return_switches=True,
        entropy_weight=0.01, return_sequences=True, go_backwards=True,
        kernel_regularizer="l2")
    clone = MarkovLSTM.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    cell = MarkovLSTMCell.from_config(layer.cell.get_config())
    assert cell.get_config() == layer.cell.get_config()


# ------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, error, words", [
    (dict(units=0), ValueError, "units=0"),
    (dict(units=2.5), TypeError, "units=2.5"),
    (dict(units=4, num_states=0), ValueError, "num_states=0"),
    (dict(units=4, temperature=0.0), ValueError, "temperature=0.0"),
    (dict(units=4, temperature=-1), ValueError, "temperature=-1"),
    (dict(units=4, inference_switch="mean"), ValueError,
     "inference_switch='mean'"),
    (dict(units=4, dropout=1.5), ValueError, "dropout=1.5"),
    (dict(units=4, seed="a"), TypeError, "seed='a'"),
])
def test_bad_arguments_raise_at_construction(kwargs, error, words):
    with pytest.raises(error, match=words):
        MarkovLSTMCell(**kwargs)
    with pytest.raises(error, match=words):
        MarkovLSTM(**kwargs)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="entropy_weight=-0.1"):
        MarkovLSTM(4, entropy_weight=-0.1)
    cell = MarkovLSTMCell(4)
    with pytest.raises(ValueError, match="temperature=0"):
        cell.temperature = 0


@pytest.mark.parametrize("shape", [(4, 3), (2, 4, 3, 1)])
def test_input_that_is_not_3d_raises_at_build(shape):
    layer = MarkovLSTM(4)
    with pytest.raises(ValueError, match="3-D input"):
        layer(np.zeros(shape, "float32"))


@tensorflow_only(
    "compares TensorFlow's two loops, per-step projection against XLA's "
    "projection before the loop; JAX always projects before its loop and "
    "PyTorch never compiles it, one loop each, checked against NumPy by "
    "test_layer_switch_outputs_match_numpy_over_a_sequence")
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("length", [9, None])
def test_xla_loop_projecting_before_the_loop_matches_the_per_step_loop(
    go_backwards, length, kernel_tol
):
    """Under XLA the layer projects all steps before its loop; otherwise
    each step projects its own inputs. Same outputs, switches, masked steps
    and gradients either way (also with an unknown length)."""
    import tensorflow as tf

    rng = np.random.default_rng(31)
    x = rng.normal(size=(3, 9, 2)).astype("float32")
    mask = np.ones((3, 9), bool)
    mask[1, 6:] = False
    # loop_jit_compile=False: on a GPU the plain tf.function would
    # otherwise compile the loop too, and no per-step loop would run.
    layer = MarkovLSTM(5, num_states=3, return_sequences=True,
                       return_switches=True, entropy_weight=0.1,
                       go_backwards=go_backwards, seed=0,
                       loop_jit_compile=False)
    layer.build((3, None, 2))
    randomize(layer.cell, scale=1, names=BIASES)

    def run(inputs):
        with tf.GradientTape() as tape:
            h, q, z = layer(inputs, mask=mask)
            loss = tf.reduce_sum(h * h) + tf.add_n(layer.losses)
        return [h, q, z] + tape.gradient(loss, layer.trainable_weights)

    spec = tf.TensorSpec((3, length, 2), tf.float32)
    per_step = tf.function(run, input_signature=[spec])(x)
    xla = tf.function(run, input_signature=[spec], jit_compile=True)(x)
    for a, b in zip(per_step, xla):  # XLA against TF kernels (conftest)
        np.testing.assert_allclose(a, b, **kernel_tol(rtol=1e-4, atol=1e-5))


@pytest.mark.parametrize("training", [False, True])
def test_unknown_length_runs_every_step(training, kernel_tol):
    """With an unknown time dimension the loop must not stop early (the
    Keras loop would read the batch size as the length if handed
    time-major inputs), in inference and with sampled noise."""
    rng = np.random.default_rng(21)
    x = rng.normal(size=(2, 9, 3)).astype("float32")
    fixed = MarkovLSTM(4, num_states=3, return_sequences=True,
                       inference_switch="expected", seed=0)
    fixed.build(x.shape)
    dynamic = MarkovLSTM(4, num_states=3, return_sequences=True,
                         inference_switch="expected", seed=0)
    dynamic.build((2, None, 3))
    dynamic.set_weights(fixed.get_weights())
    if BACKEND == "tensorflow":
        import tensorflow as tf

        # A graph that does not know the length.
        spec = tf.TensorSpec((2, None, 3), tf.float32)
        got = tf.function(lambda v: dynamic(v, training=training),
                          input_signature=[spec])(x)
    else:
        # JAX's traces and PyTorch's eager calls know every length: the
        # unknown one is that of Keras's symbolic call (on JAX a trace with
        # stand-in lengths), then the model runs on the 9 steps.
        inputs = keras.Input(batch_shape=(2, None, 3))
        model = keras.Model(inputs, dynamic(inputs))
        assert tuple(model.output.shape) == (2, None, 4)
        got = model(x, training=training)
    got = to_numpy(got)
    want = to_numpy(fixed(x, training=training))
    assert got.shape == (2, 9, 4)
    # The last steps were computed, not left at zero.
    assert np.abs(got[:, -1]).sum() > 0
    if not training:
        # On a GPU the tf.function compiles the loop (loop_jit_compile=
        # "auto"), the eager call does not: two kernel paths (conftest).
        np.testing.assert_allclose(got, want,
                                   **kernel_tol(rtol=1e-5, atol=1e-5))


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_one_state_matches_keras_lstm_with_mask(go_backwards,
                                                return_sequences,
                                                kernel_tol):
    rng = np.random.default_rng(22)
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    mask = np.ones((3, 6), bool)
    mask[0, 4:] = False
    mask[1, 2:] = False
    markov = MarkovLSTM(4, num_states=1, go_backwards=go_backwards,
                        return_sequences=return_sequences)
    markov.build(x.shape)
    randomize(markov.cell, scale=1, names=BIASES)
    lstm = keras.layers.LSTM(4, go_backwards=go_backwards,
                             return_sequences=return_sequences)
    lstm.build(x.shape)
    lstm.set_weights(markov.cell.lstm_weights(0))
    # On a GPU Keras's LSTM runs cuDNN: another kernel path (conftest).
    np.testing.assert_allclose(markov(x, mask=mask), lstm(x, mask=mask),
                               **kernel_tol(rtol=1e-5, atol=1e-6))


def test_entropy_loss_mask_follows_go_backwards():
    rng = np.random.default_rng(23)
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1] * 6], bool)
    layer = MarkovLSTM(5, num_states=3, entropy_weight=1.0,
                       return_switches=True, go_backwards=True, seed=1)
    _, q, _ = layer(x, mask=mask, training=False)
    # q comes in processing order (last input step first), like the mask
    # reversed in time.
    q = to_numpy(q)
    entropy = -(q * np.log(q)).sum(-1)
    weight = mask[:, ::-1].astype("float32")
    want = -(entropy * weight).sum() / weight.sum()
    np.testing.assert_allclose(layer.losses[0], want, rtol=1e-5)


def test_flags_must_be_booleans_and_weights_need_a_build():
    with pytest.raises(TypeError, match="straight_through='no'"):
        MarkovLSTMCell(4, straight_through="no")
    with pytest.raises(TypeError, match="return_switches='False'"):
        MarkovLSTM(4, return_switches="False")
    with pytest.raises(ValueError, match="build it"):
        MarkovLSTMCell(4).lstm_weights(0)
    with pytest.raises(ValueError, match="temperature=0.0"):
        keras_mrnn.gumbel.gumbel_softmax(np.zeros((2, 3)), temperature=0.0)


def test_unit_forget_bias_sets_the_forget_block_like_keras():
    cell = MarkovLSTMCell(3, num_states=2, bias_initializer="ones")
    cell.build((None, 2))
    keras_cell = keras.layers.LSTMCell(3, bias_initializer="ones")
    keras_cell.build((None, 2))
    np.testing.assert_allclose(cell.lstm_weights(1)[2],
                               to_numpy(keras_cell.bias))


@pytest.mark.parametrize("return_state", [False, True])
def test_symbolic_output_dtypes_match_eager_under_mixed_precision(
        return_state):
    # q and z are computed in float32; h and the states in float16.
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = MarkovLSTM(4, num_states=2, return_switches=True,
                           return_state=return_state)
        symbolic = layer(keras.Input((5, 3)))
        eager = layer(np.zeros((2, 5, 3), "float32"))
        got = [keras.backend.standardize_dtype(t.dtype) for t in symbolic]
        want = [keras.backend.standardize_dtype(t.dtype) for t in eager]
        assert got == want
        assert got[:3] == ["float16", "float32", "float32"]
        assert [tuple(t.shape)[1:] for t in symbolic] == [
            tuple(t.shape)[1:] for t in eager]
    finally:
        keras.mixed_precision.set_global_policy(policy)
