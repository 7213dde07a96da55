"""The Markov LSTM, its callbacks and saving on whichever Keras backend runs.

`.ci/run` runs the suite under TensorFlow, JAX and PyTorch. Each test
compares with something independent of the backend's loop: the same
layer's eager call on other chunks, the layer without a mask on trimmed
sequences, the layer's own states, a file saved on another backend.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_mrnn
from _helpers import run_python, slow


BACKEND = keras.backend.backend()
SWITCHES = ["linear", "predictive", "hmm"]


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _numpy(x):
    return ops.convert_to_numpy(x)


def _installed(backend):
    import importlib.util

    # Each backend's library has the backend's name.
    return importlib.util.find_spec(backend) is not None


# ------------------------------------------------------------------ noise
@pytest.mark.parametrize("switch", SWITCHES)
def test_training_noise_differs_by_row_step_and_call(switch):
    # Frozen noise (JAX's lax.scan discarding the seed generator's update)
    # would give every row and step the same z, and the next call too.
    # Soft samples (no straight-through rounding): with fresh Gumbel noise
    # no two of the 32 x 8 are equal.
    x = np.zeros((32, 8, 3), "float32")
    layer = keras_mrnn.MarkovLSTM(
        4, num_states=3, switch=switch, straight_through=False,
        return_switches=True, seed=1)
    _, _, z1 = layer(x, training=True)
    _, _, z2 = layer(x, training=True)
    z1, z2 = _numpy(z1).reshape(-1, 3), _numpy(z2).reshape(-1, 3)
    assert len(np.unique(z1.round(6), axis=0)) == 32 * 8
    assert not np.any(np.all(np.isclose(z1, z2, atol=1e-6), axis=-1))
    np.testing.assert_allclose(z1.sum(-1), 1.0, atol=1e-5)  # the simplex


def test_same_seed_gives_the_same_noise():
    x = np.zeros((4, 6, 3), "float32")
    draws = []
    for _ in range(2):
        layer = keras_mrnn.MarkovLSTM(
            4, num_states=3, return_switches=True, seed=7)
        draws.append(_numpy(layer(x, training=True)[2]))
    np.testing.assert_array_equal(draws[0], draws[1])


def test_sampled_inference_noise_is_fresh_in_predict():
    # predict runs the backend's compiled step (jit on JAX).
    inputs = keras.Input((8, 3))
    _, q, z = keras_mrnn.MarkovLSTM(
        4, num_states=3, inference_switch="sample", return_switches=True,
        seed=3)(inputs)
    model = keras.Model(inputs, z)
    x = np.zeros((16, 8, 3), "float32")
    z1 = model.predict(x, verbose=0)
    z2 = model.predict(x, verbose=0)
    assert len(np.unique(z1.argmax(-1))) == 3
    assert not np.array_equal(z1, z2)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's loop only")
def test_bare_cell_in_jax_loop_refuses_frozen_noise():
    rnn = keras.layers.RNN(keras_mrnn.MarkovLSTMCell(4, num_states=3))
    with pytest.raises(ValueError, match="keras_mrnn.MarkovLSTM"):
        rnn(_x((2, 5, 3)), training=True)
    # Without noise (inference's argmax) the bare cell runs.
    assert tuple(rnn(_x((2, 5, 3))).shape) == (2, 4)
    # And in fit, behind a layer with weights (differentiated inputs).
    model = keras.Sequential([
        keras.Input((5, 3)), keras.layers.Dense(3),
        keras.layers.RNN(keras_mrnn.MarkovLSTMCell(4, num_states=3))])
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="keras_mrnn.MarkovLSTM"):
        model.fit(_x((4, 5, 3)), np.zeros((4, 4)), verbose=0)


def test_layer_behind_a_trained_layer_fits():
    # Its inputs are then traced for the gradient: on JAX the frozen-noise
    # check must not mistake that for a loop of its own.
    model = keras.Sequential([
        keras.Input((6, 3)), keras.layers.Dense(3),
        keras_mrnn.MarkovLSTM(8, num_states=2), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    history = model.fit(_x((16, 6, 3)), np.zeros((16, 1)), verbose=0)
    assert np.isfinite(history.history["loss"][0])


# -------------------------------------------------------- training, masks
@pytest.mark.parametrize("switch", SWITCHES)
def test_fit_reduces_the_loss_and_predict_matches_an_eager_call(
        switch, kernel_tol):
    x = _x((64, 10, 3))
    y = x[:, -1, :1] * 0.5
    inputs = keras.Input((10, 3))
    layer = keras_mrnn.MarkovLSTM(
        8, num_states=2, switch=switch, seed=0,
        input_likelihood_weight=0.0)
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    model.compile(keras.optimizers.Adam(0.02), "mse")
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    loss = history.history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
    # Inference takes the argmax: deterministic, so the compiled predict
    # equals an eager call: float32 rounding of two kernel paths (compiled
    # and eager; on a GPU ~1e-4, see conftest.kernel_tol).
    np.testing.assert_allclose(
        model.predict(x, verbose=0), _numpy(model(x)),
        **kernel_tol(rtol=1e-4, atol=1e-5))


@pytest.mark.parametrize("go_backwards", [False, True])
def test_masked_steps_are_skipped(go_backwards):
    # Padding after (or, reversed, before) the valid steps must give the
    # output of the trimmed sequence; masked steps repeat the last valid
    # output. With packed outputs (return_switches, the hmm switch) this
    # broke Keras's JAX loop.
    x = _x((6, 9, 3))
    mask = np.ones((6, 9), bool)
    mask[:, 6:] = False
    layer = keras_mrnn.MarkovLSTM(
        5, num_states=3, switch="hmm", return_sequences=True,
        return_switches=True, go_backwards=go_backwards, seed=0)
    # The same eager ops per step on both calls: float32 rounding alone
    # (a few ulps, far below 1e-5 on any device).
    h, q, _ = (_numpy(t) for t in layer(x, mask=mask))
    h_trim, q_trim, _ = (_numpy(t) for t in layer(x[:, :6]))
    if go_backwards:
        # Processing order: the 3 padded steps come first (zeros), then
        # the valid ones.
        np.testing.assert_allclose(h[:, 3:], h_trim, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(h[:, :3], 0.0)
    else:
        np.testing.assert_allclose(h[:, :6], h_trim, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(q[:, :6], q_trim, rtol=1e-5, atol=1e-6)
        for t in range(6, 9):
            np.testing.assert_array_equal(h[:, t], h[:, 5])


def test_bidirectional_trains():
    inputs = keras.Input((7, 3))
    outputs = keras.layers.Bidirectional(
        keras_mrnn.MarkovLSTM(4, num_states=2))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(outputs))
    model.compile("adam", "mse")
    history = model.fit(_x((16, 7, 3)), np.zeros((16, 1)), epochs=2,
                        verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


# --------------------------------------------------------------- stateful
def _stateful_model(batch, steps, num_states=1):
    inputs = keras.Input((steps, 3), batch_size=batch)
    layer = keras_mrnn.MarkovLSTM(4, num_states=num_states, stateful=True,
                                  seed=0)
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    # Learning rate 0: the weights stay, so the states are comparable with
    # one pass of the same layer.
    model.compile(keras.optimizers.SGD(0.0), "mse")
    return model, layer


def _one_pass(layer, x):
    reference = keras_mrnn.MarkovLSTM.from_config(
        {**layer.get_config(), "stateful": False, "name": "reference"})
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    return _numpy(reference(x))


def test_states_carry_from_batch_to_batch_in_fit_and_predict(kernel_tol):
    # Sample i of each batch continues sample i of the previous batch:
    # after three batches the states are those of one pass over the three
    # chunks joined in time. (On JAX, Keras's untracked state variables
    # would drop every update: the states stayed zero.)
    x = _x((24, 5, 3))
    joined = np.concatenate([x[0:8], x[8:16], x[16:24]], axis=1)
    model, layer = _stateful_model(8, 5)
    model.fit(x, np.zeros((24, 1)), batch_size=8, shuffle=False, verbose=0)
    want = _one_pass(layer, joined)
    # The compiled steps against an eager pass: float32 rounding of two
    # kernel paths over 15 steps (1e-5 on the CPU; conftest.kernel_tol).
    tol = kernel_tol(rtol=0.0, atol=1e-5)
    np.testing.assert_allclose(_numpy(layer.states[0]), want, **tol)
    keras_mrnn.reset_states(model)
    model.predict(x, batch_size=8, verbose=0)
    np.testing.assert_allclose(_numpy(layer.states[0]), want, **tol)


def test_reset_states_callback_resets_within_an_epoch(kernel_tol):
    # Reset before every batch: the last states are the last chunk's
    # alone. On JAX the reset must reach the state fit carries between its
    # jitted steps, or it is undone.
    x = _x((24, 5, 3))
    model, layer = _stateful_model(8, 5)
    model.fit(x, np.zeros((24, 1)), batch_size=8, shuffle=False, verbose=0,
              callbacks=[keras_mrnn.callbacks.ResetStates(every_n_batches=1)])
    np.testing.assert_allclose(  # two kernel paths, as above
        _numpy(layer.states[0]), _one_pass(layer, x[16:24]),
        **kernel_tol(rtol=0.0, atol=1e-5))


def test_stateful_batch_of_the_wrong_size_is_a_clear_error():
    model, _ = _stateful_model(8, 5)
    with pytest.raises(ValueError, match="stateful with batch size 8"):
        model.predict(_x((12, 5, 3)), batch_size=12, verbose=0)


def test_stateful_helpers_read_and_write_states():
    model, layer = _stateful_model(8, 5, num_states=2)
    model.predict(_x((8, 5, 3)), batch_size=8, verbose=0)
    saved = keras_mrnn.stateful.get_states(model)
    assert np.abs(saved[0]).max() > 0
    with keras_mrnn.stateful.preserved_states(model):
        keras_mrnn.reset_states(model)
        assert np.abs(_numpy(layer.states[0])).max() == 0
    np.testing.assert_array_equal(keras_mrnn.stateful.get_states(model)[0],
                                  saved[0])


# -------------------------------------------------------------- callbacks
def test_temperature_schedule_reaches_the_compiled_step():
    # The temperature is a variable that the compiled step reads; the
    # schedule sets it at each epoch, and on JAX the value fit carries must
    # not undo that.
    x = _x((16, 6, 3))
    inputs = keras.Input((6, 3))
    layer = keras_mrnn.MarkovLSTM(4, num_states=3)
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    model.compile("adam", "mse")
    history = model.fit(
        x, np.zeros((16, 1)), epochs=3, verbose=0, callbacks=[
            keras_mrnn.callbacks.GumbelTemperatureScheduler(
                schedule=lambda epoch: 2.0 / (epoch + 1))])
    np.testing.assert_allclose(history.history["temperature"],
                               [2.0, 1.0, 2.0 / 3.0], rtol=1e-6)
    assert layer.temperature == pytest.approx(2.0 / 3.0)


# ----------------------------------------------------------------- saving
def _model_with_every_layer():
    """A Markov LSTM with each switch and a VRNN (posterior mean at
    inference, kl_weight 0.5: a setting the file carries), side by side."""
    inputs = keras.Input((7, 3))
    outputs = [
        keras_mrnn.MarkovLSTM(4, num_states=2, switch=switch,
                              name=f"markov_{switch}")(inputs)
        for switch in SWITCHES
    ]
    outputs.append(keras_mrnn.MarkovLSTM(
        4, num_states=2, name="markov_full",
        switch=keras_mrnn.switches.HMMSwitch(order=2, covariance="full"),
    )(inputs))
    outputs.append(keras_mrnn.VRNN(
        4, latent_dim=2, inference_latent="mean", kl_weight=0.5, seed=3,
        name="vrnn")(inputs))
    return keras.Model(inputs, keras.layers.Concatenate()(outputs))


@slow
@pytest.mark.parametrize(
    "other", [b for b in ("tensorflow", "jax", "torch") if b != BACKEND])
def test_keras_file_loads_on_another_backend(other, tmp_path, kernel_tol):
    if not _installed(other):
        pytest.skip(f"{other} is not installed")
    model = _model_with_every_layer()
    path = str(tmp_path / "model.keras")
    model.save(path)
    x = np.random.default_rng(0).normal(size=(4, 7, 3)).astype("float32")
    want = _numpy(model(x))
    script = tmp_path / "load.py"
    script.write_text(
        "import sys, numpy as np, keras, keras_mrnn\n"
        "x = np.random.default_rng(0).normal(size=(4, 7, 3))"
        ".astype('float32')\n"
        "model = keras.models.load_model(sys.argv[1])\n"
        "np.save(sys.argv[2], keras.ops.convert_to_numpy(model(x)))\n"
        "print(keras.backend.backend(), model.get_layer('vrnn').kl_weight)\n")
    out = str(tmp_path / "out.npy")
    result = run_python(str(script), path, out, env={"KERAS_BACKEND": other})
    assert result.stdout.split()[-2:] == [other, "0.5"]
    # The same float32 maths on two backends' kernels: a few ulps per op
    # over 7 steps (1e-5 on the CPU; on a GPU ~1e-4, conftest.kernel_tol).
    np.testing.assert_allclose(np.load(out), want,
                               **kernel_tol(rtol=1e-5, atol=1e-5))


# ------------------------------------------------------ without TensorFlow
BLOCK_TENSORFLOW = """
import sys
# As if not installed: `import` raises ImportError and
# importlib.util.find_spec (which PyTorch asks) returns None.
for name in ("tensorflow", "tensorflow_probability", "tf_keras"):
    sys.modules[name] = None
import numpy as np, keras, keras_mrnn
x = np.zeros((2, 5, 3), "float32")
for switch in ("linear", "predictive", "hmm"):
    layer = keras_mrnn.MarkovLSTM(4, num_states=2, switch=switch)
    layer(x, training=True)
keras_mrnn.VRNN(4, latent_dim=2)(x, training=True)
assert sys.modules["tensorflow"] is None
print("imported and ran without TensorFlow on", keras.backend.backend())
"""


@slow
@pytest.mark.skipif(BACKEND == "tensorflow",
                    reason="the TensorFlow backend needs TensorFlow")
def test_package_runs_without_tensorflow(tmp_path):
    script = tmp_path / "no_tf.py"
    script.write_text(BLOCK_TENSORFLOW)
    result = run_python(str(script), env={"KERAS_BACKEND": BACKEND})
    assert "without TensorFlow" in result.stdout


@pytest.mark.skipif(keras.backend.backend() != "torch",
                    reason="PyTorch's torch.compile")
@pytest.mark.parametrize("kind", ["markov", "vrnn"])
def test_jit_compile_runs_eagerly_on_torch(kind):
    # A file saved on JAX or TensorFlow carries jit_compile=True (resolved
    # from "auto") into compile: torch.compile then retraced the loop for
    # tens of seconds before the first prediction (Keras's LSTM still
    # does). The layers say they do not support it: Keras warns and runs
    # eagerly.
    inputs = keras.Input((None, 3))
    layer = (keras_mrnn.MarkovLSTM(4, num_states=2) if kind == "markov"
             else keras_mrnn.VRNN(4, latent_dim=2))
    model = keras.Model(inputs, layer(inputs))
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile("adam", "mse", jit_compile=True)
    assert model.jit_compile is False
