"""Masks given to `MarkovLSTM` and `VRNN` (issue 22): one of the wrong shape
is a `ValueError` that names `mask`, the expected `(batch, time)` and the
shape received, raised before the loop on every backend, eager and compiled
(Keras's loop failed deep inside instead, its own way on each backend, or
took a `(batch, time, 1)` mask silently); a right one gives what it gave
before: right-padded sequences with their mask equal the unpadded ones on
the valid steps, and a functional model behind `keras.layers.Masking`
trains."""

import keras
import numpy as np
import pytest
from keras import ops

from _helpers import make_layer
from keras_mrnn import _validation as check

# Run on every backend by .ci/run (see conftest.py).

BATCH, TIME, FEATURES = 4, 10, 3
BAD_MASKS = [(BATCH, TIME - 1), (BATCH, TIME + 1), (BATCH - 1, TIME),
             (BATCH, TIME, 1)]
LAYERS = ["linear", "hmm", "vrnn"]
BACKEND = keras.backend.backend()


def new_layer(name, **kwargs):
    if name == "vrnn":
        # The posterior mean outside training: deterministic outputs.
        return make_layer("vrnn", inference_latent="mean", **kwargs)
    return make_layer("markov", switch=name, **kwargs)


def sequences(seed=0):
    return np.random.default_rng(seed).normal(
        size=(BATCH, TIME, FEATURES)).astype("float32")


_CALLED = {}


def called_layer(name):
    """A layer of `name`, built and called once on `sequences()`: the
    check must not depend on a first call. Made once for the module: a
    wrong mask is refused before the loop and leaves the layer as it was,
    so each kind's first call (a compilation on JAX) runs once, not in
    every test."""
    if name not in _CALLED:
        layer = new_layer(name)
        layer(sequences())
        _CALLED[name] = layer
    return _CALLED[name]


def compiled_call(layer):
    """`layer(x, mask=mask)` traced as `fit` and `predict` run it: in a
    `tf.function` on TensorFlow, under `jax.jit` (a stateless call) on
    JAX. PyTorch has no such trace: its eager tests are the ones."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x, mask: layer(x, mask=mask))
    if BACKEND == "jax":
        import jax

        def call(trainable, non_trainable, x, mask):
            outputs, _ = layer.stateless_call(
                trainable, non_trainable, x, mask=mask)
            return outputs

        jitted = jax.jit(call)
        return lambda x, mask: jitted(
            [v.value for v in layer.trainable_variables],
            [v.value for v in layer.non_trainable_variables],
            x, mask,
        )
    pytest.skip("PyTorch runs eagerly: the eager tests cover it.")


def assert_names_mask(error, received):
    message = str(error.value)
    assert "`mask`" in message
    assert f"(batch, time) = ({BATCH}, {TIME})" in message
    assert f"Received shape {received}" in message


# --------------------------------------------------- masks of wrong shapes
@pytest.mark.parametrize("received", BAD_MASKS, ids=str)
@pytest.mark.parametrize("name", LAYERS)
def test_wrong_mask_shape_is_a_value_error(name, received):
    layer = called_layer(name)
    x = sequences()
    with pytest.raises(ValueError, match="mask") as error:
        layer(x, mask=np.ones(received, bool))
    assert_names_mask(error, received)


@pytest.mark.parametrize("received", BAD_MASKS, ids=str)
@pytest.mark.parametrize("name", LAYERS)
def test_wrong_mask_shape_is_a_value_error_unbuilt(name, received):
    with pytest.raises(ValueError, match="mask") as error:
        new_layer(name)(sequences(), mask=ops.ones(received, "bool"))
    assert_names_mask(error, received)


@pytest.mark.parametrize("received", BAD_MASKS, ids=str)
@pytest.mark.parametrize("name", LAYERS)
def test_wrong_mask_shape_is_a_value_error_when_traced(name, received):
    layer = called_layer(name)
    x = sequences()
    call = compiled_call(layer)
    with pytest.raises(ValueError, match="mask") as error:
        call(x, np.ones(received, bool))
    assert_names_mask(error, received)


@pytest.mark.parametrize("received", BAD_MASKS, ids=str)
@pytest.mark.parametrize("method", ["infer", "reconstruct",
                                    "log_likelihood"])
def test_the_vrnn_analysis_methods_check_their_mask(method, received):
    layer = called_layer("vrnn")
    x = sequences()
    kwargs = {"num_samples": 2} if method == "log_likelihood" else {}
    with pytest.raises(ValueError, match="mask") as error:
        getattr(layer, method)(x, mask=np.ones(received, bool), **kwargs)
    assert_names_mask(error, received)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function only")
def test_unknown_dimensions_are_not_compared():
    import tensorflow as tf

    layer = new_layer("linear")

    def trace(x_shape, mask_shape):
        # A new function each time: a traced one would serve any shape its
        # more general trace accepts, without tracing again.
        call = tf.function(lambda x, mask: layer(x, mask=mask))
        call.get_concrete_function(
            tf.TensorSpec(x_shape), tf.TensorSpec(mask_shape, tf.bool))

    # (None, None) fits any inputs; a wrong rank is known all the same.
    trace((None, None, FEATURES), (None, None))
    trace((None, 20, FEATURES), (4, None))
    with pytest.raises(ValueError, match=r"Received shape \(None, None, 1\)"):
        trace((None, None, FEATURES), (None, None, 1))
    with pytest.raises(ValueError, match=r"Received shape \(None, 19\)"):
        trace((None, 20, FEATURES), (None, 19))


def test_the_check_compares_known_dimensions_only():
    check.mask_shape("layer", (4, 20), (4, 20, 3))
    check.mask_shape("layer", (None, 20), (4, 20, 3))
    check.mask_shape("layer", (4, None), (None, None, 3))
    with pytest.raises(ValueError) as error:
        check.mask_shape("layer", (None, 19), (None, 20, 3))
    assert str(error.value) == (
        "Layer 'layer': `mask` must have shape (batch, time) = (None, 20). "
        "Received shape (None, 19). The inputs have shape (None, 20, 3)."
    )
    with pytest.raises(ValueError, match=r"Received shape \(4,\)"):
        check.mask_shape("layer", (4,), (4, 20, 3))


# -------------------------------------------- right masks, as before
LENGTHS = [TIME, 6, 3, 1]


def padded_sequences():
    """Right-padded sequences of `LENGTHS` steps (large noise after them,
    which the mask must keep out) and their mask."""
    x = sequences(1)
    mask = np.arange(TIME)[None, :] < np.array(LENGTHS)[:, None]
    noise = np.random.default_rng(2).normal(size=x.shape) * 5.0
    return np.where(mask[..., None], x, noise).astype("float32"), mask


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "traced"])
@pytest.mark.parametrize("name", LAYERS)
def test_right_padded_and_masked_equals_unpadded(name, traced, kernel_tol):
    layer = new_layer(name, return_sequences=True)
    x, mask = padded_sequences()
    layer.build(x.shape)
    call = compiled_call(layer) if traced else (
        lambda x, mask: layer(x, mask=mask))
    h = np.asarray(call(x, mask))
    assert h.shape == (BATCH, TIME, layer.cell.units)
    for i, length in enumerate(LENGTHS):
        alone = np.asarray(layer(x[i:i + 1, :length]))[0]
        # The same float32 maths on another batch (and traced or not): a
        # few ulps per op over 10 steps, 1e-5 on the CPU (on a GPU other
        # matmul algorithms, ~1e-4: conftest.kernel_tol).
        np.testing.assert_allclose(h[i, :length], alone,
                                   **kernel_tol(rtol=1e-5, atol=1e-5))
        # Masked steps repeat the last valid output (Keras's convention):
        # copies, equal to float32 rounding at most.
        np.testing.assert_allclose(
            h[i, length:],
            np.broadcast_to(h[i, length - 1], h[i, length:].shape),
            rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("time", [TIME, None], ids=["fixed", "any-length"])
@pytest.mark.parametrize("name", LAYERS)
def test_functional_model_behind_masking_trains(name, time, kernel_tol):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((time, FEATURES))
    masked = keras.layers.Masking(mask_value=0.0)(inputs)
    h = new_layer(name)(masked)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x, mask = padded_sequences()
    x = np.where(mask[..., None], x, 0.0).astype("float32")
    y = x[:, :, :1].sum(axis=1)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(b, np.array(w))
               for b, w in zip(before, model.trainable_weights))
    # The model's mask is the padding's: its prediction equals a direct
    # call with that mask (compiled `predict` against eager ops: float32
    # rounding, 1e-5 on the CPU, conftest.kernel_tol on a GPU).
    direct = model.layers[2](x, mask=mask)
    np.testing.assert_allclose(
        np.asarray(model.predict(x, batch_size=BATCH, verbose=0)),
        np.asarray(model.layers[3](direct)),
        **kernel_tol(rtol=1e-5, atol=1e-5))
