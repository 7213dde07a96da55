"""Reliability of the Markov LSTM and VRNN layers under hard conditions:
extreme temperatures, long sequences, mixed precision, non-finite inputs,
saving a stateful model, and MirroredStrategy over 2 logical devices."""

import numpy as np
import pytest
import keras
from keras import ops

import keras_mrnn
from _helpers import (
    BACKEND, MIRRORED_TRAINING, last_json_line, make_layer, run_python, slow,
    tensorflow_only, to_numpy, value_and_gradients,
)
from keras_mrnn import stateful

B, T, F = 4, 7, 3


def finite(values):
    return all(np.all(np.isfinite(to_numpy(v))) for v in values)


def loss_fn_of(layer, x, training=True):
    """The loss of the tests' gradients: the sum of squares of the first
    output plus the layer's own losses; the aux holds the outputs and how
    many losses the layer added (so that none goes missing)."""
    def loss_fn():
        out = layer(x, training=training)
        outputs = list(out) if isinstance(out, (tuple, list)) else [out]
        loss = ops.sum(ops.square(ops.cast(outputs[0], "float32")))
        for extra in layer.losses:
            loss = loss + extra
        return loss, (outputs, len(layer.losses))
    return loss_fn


def loss_and_grads(layer, x, training=True):
    """`(outputs, loss, grads, number of layer losses)` as NumPy, through
    each backend's gradients (`value_and_gradients`)."""
    loss, grads, (outputs, losses) = value_and_gradients(
        loss_fn_of(layer, x, training), layer.trainable_variables,
        has_aux=True)
    return outputs, loss, grads, losses


# ------------------------------------------------- extreme temperatures
@pytest.mark.parametrize("straight_through", [False, True])
@pytest.mark.parametrize("temperature", [1e-3, 100.0])
def test_extreme_temperatures_give_finite_outputs_and_gradients(
    temperature, straight_through
):
    x = np.random.default_rng(0).normal(size=(B, T, F)).astype("float32")
    # The initial weights too: drawn from Keras's global generator, they
    # otherwise depend on the tests run before this one, and at tau = 1e-3
    # a step whose top two perturbed logits fall within ~5e-3 of each other
    # (one such draw among 28 steps) gives a soft sample of 0.95.
    keras.utils.set_random_seed(0)
    layer = keras_mrnn.MarkovLSTM(
        5, num_states=3, temperature=temperature, seed=1,
        straight_through=straight_through, return_switches=True,
        return_sequences=True, entropy_weight=0.1,
    )
    layer.build(x.shape)  # the weights to differentiate exist
    (h, q, z), loss, grads, losses = loss_and_grads(layer, x)
    assert losses == 1  # the entropy loss is in the gradients
    assert len(grads) == len(layer.trainable_variables) == 6
    assert finite([h, q, z, loss]) and finite(grads)
    assert all(np.abs(g).sum() > 0 for g in grads)
    np.testing.assert_allclose(z.sum(-1), 1.0, rtol=1e-5)
    if temperature < 1 or straight_through:  # (near) one-hot switches
        assert z.max(-1).min() > 0.99
    else:  # tau = 100: the relaxed sample is almost uniform
        np.testing.assert_allclose(z, 1.0 / 3, atol=0.05)


# ------------------------------------------------------ long sequences
# 5000 steps where the loop is compiled (TensorFlow's tf.function, JAX's
# scan). PyTorch runs every step as eager ops from Python, ~20-40 ms a step
# forward and backward on this 2-core CPU (3 and 6 minutes for the two
# layers at 5000 steps): 200 steps there, the same loop and maths.
LONG = 200 if BACKEND == "torch" else 5000


def long_sequence_loss_and_grads(layer, x):
    if BACKEND != "tensorflow":
        return loss_and_grads(layer, x)
    import tensorflow as tf

    # Eager TensorFlow runs the while loop step by step from Python
    # (minutes at 5000 steps): the loop as TensorFlow runs it in fit.
    loss_fn = loss_fn_of(layer, x)

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            loss, (outputs, losses) = loss_fn()
        return outputs, loss, tape.gradient(
            loss, layer.trainable_variables), losses

    outputs, loss, grads, losses = run()
    return ([to_numpy(o) for o in outputs], to_numpy(loss),
            [to_numpy(g) for g in grads], losses)


@pytest.mark.parametrize("kind", ["markov", "vrnn"])
def test_long_sequence_gives_finite_outputs_and_gradients(kind):
    x = np.random.default_rng(1).normal(size=(2, LONG, F)).astype("float32")
    layer = make_layer(kind, return_sequences=True)
    layer(x[:, :2])  # build eagerly

    (h,), loss, grads, losses = long_sequence_loss_and_grads(layer, x)
    assert losses == (1 if kind == "vrnn" else 0)  # the VRNN's ELBO
    assert h.shape == (2, LONG, 5)
    assert finite([h, loss]) and finite(grads)
    assert all(np.abs(g).sum() > 0 for g in grads)
    # The state stays bounded (|h| <= 1 for an LSTM) and still moves at the
    # end of the sequence.
    assert np.abs(h).max() <= 1.0
    assert np.abs(h[:, -1] - h[:, -2]).max() > 0


# ------------------------------------------------------ mixed precision
@pytest.mark.parametrize("kind", ["markov", "vrnn"])
def test_mixed_float16_stateful_training_stays_finite(kind):
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        extra = {"entropy_weight": 0.01} if kind == "markov" else {}
        layer = make_layer(kind, stateful=True, **extra)
        inputs = keras.Input(batch_shape=(B, T, F))
        outputs = keras.layers.Dense(1, dtype="float32")(layer(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(keras.optimizers.Adam(1e-2), "mse")
        assert layer.compute_dtype == "float16"
        # Large inputs push float16 activations hard.
        x = 30 * np.random.default_rng(2).normal(size=(3 * B, T, F))
        y = x[:, :, :1].sum(axis=1)
        history = model.fit(x.astype("float32"), y.astype("float32"),
                            batch_size=B, epochs=2, shuffle=False, verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    assert np.all(np.isfinite(history.history["loss"]))
    assert finite(model.weights)
    states = stateful.state_variables(model)
    assert [v.dtype for v in states] == ["float32"] * len(states)
    assert finite(states) and any(
        np.abs(keras.ops.convert_to_numpy(v)).sum() > 0 for v in states
    )


# ----------------------------------------------------- non-finite input
@pytest.mark.parametrize("kind", ["markov", "vrnn"])
def test_non_finite_input_only_poisons_its_own_sample(kind):
    """The documented behaviour (keras_mrnn.stateful module docstring): no
    error; a NaN in sample i makes sample i non-finite from that step on, an
    inf changes it from that step on (it saturates the gates: the outputs
    may stay finite), and either poisons state row i until a reset; the
    other samples are exactly as without them."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(B, T, F)).astype("float32")
    bad = x.copy()
    bad[1, 3, 0] = np.nan
    bad[2, 5, 2] = np.inf
    extra = {"inference_latent": "mean"} if kind == "vrnn" else {}
    layer = make_layer(kind, stateful=True, return_sequences=True, **extra)
    model = keras.Sequential([keras.Input(batch_shape=(B, T, F)), layer])
    clean = model.predict(x, batch_size=B, verbose=0)
    clean_states = stateful.get_states(model)
    keras_mrnn.reset_states(model)
    out = model.predict(bad, batch_size=B, verbose=0)
    for i in (0, 3):
        np.testing.assert_allclose(out[i], clean[i], rtol=1e-5, atol=1e-6)
    for i, step in [(1, 3), (2, 5)]:
        np.testing.assert_allclose(out[i, :step], clean[i, :step],
                                   rtol=1e-5, atol=1e-6)
        assert not np.allclose(out[i, step], clean[i, step])
    assert not np.any(np.isfinite(out[1, 3:]))
    for got, want in zip(stateful.get_states(model), clean_states):
        assert not np.any(np.isfinite(got[1]))
        assert not np.allclose(got[2], want[2])
        np.testing.assert_allclose(got[[0, 3]], want[[0, 3]], rtol=1e-5,
                                   atol=1e-6)
    keras_mrnn.reset_states(model)  # the cure
    np.testing.assert_allclose(
        model.predict(x, batch_size=B, verbose=0), clean, rtol=1e-5,
        atol=1e-6,
    )


# --------------------------------------------------- saving and loading
@pytest.mark.parametrize("kind", ["markov", "vrnn"])
def test_stateful_model_saved_as_keras_loads_and_keeps_training(
    kind, tmp_path
):
    keras.utils.set_random_seed(0)
    extra = {"inference_latent": "mean"} if kind == "vrnn" else {}
    inputs = keras.Input(batch_shape=(B, T, F))
    h = make_layer(kind, stateful=True, **extra)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2 * B, T, F)).astype("float32")
    y = x[:, :, :1].sum(axis=1)
    fit = dict(batch_size=B, shuffle=False, verbose=0,
               callbacks=[keras_mrnn.callbacks.ResetStates()])
    model.fit(x, y, epochs=2, **fit)
    path = str(tmp_path / "stateful.keras")
    model.save(path)

    loaded = keras.saving.load_model(path)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Keras does not save the states: the loaded model starts from zeros.
    assert all(np.abs(s).sum() == 0 for s in stateful.get_states(loaded))
    keras_mrnn.reset_states(model)
    np.testing.assert_allclose(
        loaded.predict(x, batch_size=B, verbose=0),
        model.predict(x, batch_size=B, verbose=0), rtol=1e-5, atol=1e-6,
    )
    # The optimizer state came along, and training goes on.
    assert int(loaded.optimizer.iterations) == 4
    history = loaded.fit(x, y, epochs=2, **fit)
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(loaded.optimizer.iterations) == 8
    assert any(not np.array_equal(a, b) for a, b in
               zip(loaded.get_weights(), model.get_weights()))
    # The batch guard still holds in the loaded model: TensorFlow's graph
    # assertion (its wording differs under XLA, Keras's default on a GPU:
    # words joined by underscores), a ValueError where every batch's size
    # is known when the step is traced (JAX, PyTorch).
    if BACKEND == "tensorflow":
        import tensorflow as tf

        error = tf.errors.InvalidArgumentError
    else:
        error = ValueError
    with pytest.raises(error, match="stateful.with.batch.size.4"):
        loaded.predict(x[: B + 1], batch_size=B, verbose=0)


# -------------------------------------------------------- distributed
@slow
@tensorflow_only(
    "tf.distribute's MirroredStrategy over 2 logical CPU devices (in a "
    "TensorFlow subprocess); test_data_parallel.py checks JAX's "
    "keras.distribution.DataParallel against one device the same way")
def test_mirrored_strategy_on_two_devices_matches_one_device():
    """Runs tests/_mirrored_training.py in a subprocess (the 2 logical CPU
    devices must be set before TensorFlow initializes) and compares the
    per-epoch losses of one device and of MirroredStrategy: Markov LSTM
    (tau = 100, so that the different Gumbel draws hardly matter), stateful
    Markov LSTM (per-replica state rows), and VRNN (posterior samples
    differ between the runs, hence the looser tolerance). Summed instead of
    averaged gradients would change the second epoch's loss by ~10%."""
    results = last_json_line(
        run_python(MIRRORED_TRAINING, timeout=400).stdout)
    assert results["replicas"] == 2
    for name, rtol in [("markov", 2e-3), ("markov_stateful", 2e-3),
                       ("vrnn", 2e-2)]:
        single = np.array(results[name]["single"])
        mirrored = np.array(results[name]["mirrored"])
        assert np.all(np.isfinite(single)) and single[1] < single[0], name
        np.testing.assert_allclose(mirrored, single, rtol=rtol, err_msg=name)
