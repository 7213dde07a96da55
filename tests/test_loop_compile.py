"""Tests of `loop_jit_compile`: the layers' recurrent loop compiled alone
with XLA (the GPU path without model-level XLA), checked on the CPU with the
compilation forced on, against the uncompiled loop: eagerly in inference
(no noise), and inside a model-level XLA function in training, where the
random draws come from the same XLA kernels (XLA's stateless random numbers
differ from TensorFlow's, so an uncompiled loop outside XLA draws other
noise).

`loop_jit_compile` is TensorFlow's: on JAX (whose `jit` compiles the whole
step) and PyTorch (eager) the setting is saved and has no effect (README
"Backends"). The tests of the compiled loop are therefore TensorFlow-only
(`tensorflow_only`, with what they check in the reason); the setting's
validation, its round trip through a saved model, and that it compiles
nothing elsewhere run on every backend."""

import textwrap

import numpy as np
import pytest
import tensorflow as tf
import keras

import _helpers
from _helpers import BACKEND, slow, tensorflow_only
import keras_mrnn
from keras_mrnn import _rnn
from keras_mrnn import stateful

B, T, F = 3, 9, 2


def make_layer(kind, loop_jit_compile, **kwargs):
    """The Markov layer returns its switches and adds an entropy loss."""
    if kind == "markov":
        kwargs = {"return_switches": True, "entropy_weight": 0.1, **kwargs}
    return _helpers.make_layer(kind, seed=0,
                               loop_jit_compile=loop_jit_compile, **kwargs)


def twins(kind, input_shape=(B, None, F), **kwargs):
    """Two layers with the same weights: loop uncompiled, loop compiled."""
    plain = make_layer(kind, False, **kwargs)
    compiled = make_layer(kind, True, **kwargs)
    for layer in (plain, compiled):
        layer.build(input_shape)
    rng = np.random.default_rng(5)
    plain.set_weights([rng.normal(scale=0.5, size=w.shape).astype(w.dtype)
                       for w in plain.get_weights()])
    compiled.set_weights(plain.get_weights())
    return plain, compiled


def data(mask_steps=True):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(B, T, F)).astype("float32")
    mask = np.ones((B, T), bool)
    if mask_steps:
        mask[1, 6:] = False
    return x, mask


def outputs_loss_and_grads(layer, x, mask, training):
    """The layer's outputs, its losses, and the gradients of a loss of all
    of them with respect to the weights and the input."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x, mask=mask, training=training)
        outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
        squares = [tf.reduce_sum(tf.square(tf.cast(o, "float32")))
                   for o in outputs]
        loss = tf.add_n(squares + [tf.cast(v, "float32")
                                   for v in layer.losses])
    grads = tape.gradient(loss, layer.trainable_weights + [x])
    return outputs + [loss] + grads


def assert_all_close(got, want, tol):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                   err_msg=f"item {i}", **tol)


def count_compiled_calls(monkeypatch):
    calls = []
    original = _rnn.SteppedRNN._compiled_loop

    def spy(self, *args):
        calls.append(self.name)
        return original(self, *args)

    monkeypatch.setattr(_rnn.SteppedRNN, "_compiled_loop", spy)
    return calls


# ------------------------------------------------------------ inference
@tensorflow_only(
    "the loop compiled alone with XLA (loop_jit_compile) against the "
    "uncompiled loop, eagerly and in a tf.function: TensorFlow's; JAX jits "
    "the whole step and PyTorch runs eagerly, where the setting has no "
    "effect (test_saved_model_keeps_the_setting checks that)")
# Backwards once: both kinds run the shared loop (_rnn.SteppedRNN), whose
# go_backwards the Markov layer's mask and entropy loss exercise.
@pytest.mark.parametrize("kind, go_backwards", [
    ("markov", False), ("markov", True), ("vrnn", False)])
def test_compiled_loop_matches_the_uncompiled_loop_in_inference(
    kind, go_backwards, kernel_tol, monkeypatch
):
    """No noise in inference (Markov argmax switch, VRNN posterior mean):
    the compiled loop gives the uncompiled loop's outputs, losses and
    gradients (weights and input), with a mask, backwards, eagerly and
    inside a tf.function, with a known and an unknown length."""
    extra = {"inference_latent": "mean"} if kind == "vrnn" else {}
    plain, compiled = twins(kind, go_backwards=go_backwards,
                            return_sequences=True, **extra)
    x, mask = data()
    calls = count_compiled_calls(monkeypatch)
    want = outputs_loss_and_grads(plain, x, mask, False)
    assert calls == []
    tol = kernel_tol(rtol=1e-4, atol=1e-5)  # XLA against TF kernels
    assert_all_close(outputs_loss_and_grads(compiled, x, mask, False),
                     want, tol)
    # The eager call's compilation serves neither trace: each length is
    # traced (and the loop compiled) anew.
    for length in (T, None):
        spec = tf.TensorSpec((B, length, F), tf.float32)
        traced = tf.function(
            lambda v: outputs_loss_and_grads(compiled, v, mask, False),
            input_signature=[spec], autograph=False)
        assert_all_close(traced(x), want, tol)
    assert len(calls) == 3


# ------------------------------------------------------------- training
@tensorflow_only(
    "the XLA-compiled loop's gradient (loop_jit_compile) recomputes its "
    "forward pass from the same random draws, against a model-level XLA "
    "tf.function: TensorFlow's; elsewhere the setting has no effect")
@pytest.mark.parametrize("kind, extra", [
    ("markov", {"straight_through": False, "dropout": 0.3,
                "recurrent_dropout": 0.2}),
    ("markov", {"straight_through": True}),
    ("vrnn", {}),
])
def test_compiled_loop_reproduces_its_noise_for_the_gradient(
    kind, extra, kernel_tol
):
    """In training the compiled loop runs its forward pass twice (the
    gradient recomputes it). With Gumbel noise, dropout masks or posterior
    samples, the gradients equal those of the uncompiled loop inside a
    model-level XLA function (the same random kernels): the recomputation
    used the same draws. The seed generators end where the reference's do,
    and a second call draws new noise."""
    plain, compiled = twins(kind, **extra)
    x, mask = data()

    def reference(v):
        return outputs_loss_and_grads(plain, v, mask, True)

    def run(v):
        return outputs_loss_and_grads(compiled, v, mask, True)

    xla_reference = tf.function(reference, jit_compile=True, autograph=False)
    tol = kernel_tol(rtol=1e-4, atol=1e-5)  # two XLA programs
    first = xla_reference(x)
    assert_all_close(run(x), first, tol)  # eager call
    for a, b in zip(plain.cell.non_trainable_variables,
                    compiled.cell.non_trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    second = xla_reference(x)
    assert_all_close(tf.function(run, autograph=False)(x), second, tol)
    # New draws at the second call (the noise changed the outputs).
    assert not np.allclose(first[0], second[0])


@tensorflow_only(
    "a stateful model with the loop compiled alone by XLA "
    "(loop_jit_compile) against the model compiled by XLA (jit_compile), "
    "and TensorFlow's runtime guard error around that loop: TensorFlow's; "
    "test_stateful's test_last_batch_of_one_is_an_error_not_corrupted_states"
    " checks the guard in fit, evaluate and predict on every backend")
@pytest.mark.parametrize("kind, guarded_calls", [
    ("markov", ("fit", "evaluate", "predict")),
    # The same guard (_rnn.SteppedRNN's), in the call that compiles least
    # (a fit compiles the loop and its gradient again: 9 s of 2 cores).
    ("vrnn", ("predict",)),
])
def test_stateful_fit_with_a_compiled_loop_and_its_guard(
    kind, guarded_calls, kernel_tol
):
    """A stateful model whose loop is compiled trains like the same model
    compiled with XLA as a whole (weights and carried states after 2
    epochs), and a batch of the wrong size still gets the guard's plain
    message (the check runs outside the compiled loop) in fit, evaluate
    and predict."""
    batch, window = 4, 5
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3 * batch, window, F)).astype("float32")
    y = x[:, :, :1].sum(axis=1)

    def build(loop_jit_compile, jit_compile):
        keras.utils.set_random_seed(0)
        extra = ({"straight_through": False} if kind == "markov"
                 else {"inference_latent": "mean"})
        inputs = keras.Input(batch_shape=(batch, window, F))
        layer = make_layer(kind, loop_jit_compile, stateful=True, **extra)
        h = layer(inputs)
        h = h[0] if isinstance(h, (tuple, list)) else h
        model = keras.Model(inputs, keras.layers.Dense(1)(h))
        model.compile(keras.optimizers.Adam(1e-2), "mse",
                      jit_compile=jit_compile)
        return model

    reference = build(False, True)
    compiled = build(True, False)
    compiled.set_weights(reference.get_weights())
    fit = dict(batch_size=batch, epochs=2, shuffle=False, verbose=0)
    want = reference.fit(x, y, **fit).history["loss"]
    got = compiled.fit(x, y, **fit).history["loss"]
    tol = kernel_tol(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, want, **tol)
    assert_all_close(compiled.get_weights(), reference.get_weights(), tol)
    assert_all_close(stateful.get_states(compiled),
                     stateful.get_states(reference), tol)
    for call in guarded_calls:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="is stateful with batch size 4"):
            if call == "fit":
                compiled.fit(x[:batch + 1], y[:batch + 1], **fit)
            elif call == "evaluate":
                compiled.evaluate(x[:batch + 1], y[:batch + 1],
                                  batch_size=batch, verbose=0)
            else:
                compiled.predict(x[:batch + 1], batch_size=batch, verbose=0)


# ------------------------------------------------------------- choosing
def fake_gpu(monkeypatch):
    """Makes `tf.config.list_logical_devices("GPU")` report one GPU."""
    original = tf.config.list_logical_devices

    def devices(device_type=None):
        if device_type == "GPU":
            return [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
        return original(device_type)

    monkeypatch.setattr(tf.config, "list_logical_devices", devices)


@tensorflow_only(
    "when loop_jit_compile compiles: eagerly, in a tf.function, under XLA, "
    "with a (faked) TensorFlow GPU; elsewhere it never compiles "
    "(test_saved_model_keeps_the_setting)")
@pytest.mark.parametrize("setting, gpu, want", [
    # (eager call, plain tf.function, XLA tf.function, functional model)
    ("auto", False, (False, False, False, False)),
    ("auto", True, (False, True, False, False)),
    (True, False, (True, True, False, False)),
    (False, True, (False, False, False, False)),
])
def test_when_the_loop_is_compiled(setting, gpu, want, monkeypatch):
    """'auto' compiles inside a tf.function when a GPU is visible, never
    eagerly; True also eagerly; nothing is compiled again under XLA, nor
    when Keras only infers shapes (a functional model's construction)."""
    if gpu:
        fake_gpu(monkeypatch)
    calls = count_compiled_calls(monkeypatch)
    layer = make_layer("markov", setting)
    x, _ = data()
    got = []
    for run in (
        lambda: layer(x),
        lambda: tf.function(lambda: layer(x), autograph=False)(),
        lambda: tf.function(lambda: layer(x), jit_compile=True,
                            autograph=False)(),
        lambda: keras.Model(*(lambda i: (i, layer(i)))(keras.Input((T, F)))),
    ):
        before = len(calls)
        run()
        got.append(len(calls) > before)
    assert tuple(got) == want


def test_config_round_trip_and_bad_values():
    for setting in ("auto", True, False):
        for cls, kind in ((keras_mrnn.MarkovLSTM, "markov"),
                          (keras_mrnn.VRNN, "vrnn")):
            config = make_layer(kind, setting).get_config()
            assert config["loop_jit_compile"] == setting
            assert cls.from_config(config).loop_jit_compile == setting
    for bad in ("yes", 1, None, "AUTO"):
        with pytest.raises(ValueError,
                           match=rf"loop_jit_compile={bad!r}".replace(
                               "(", r"\(")):
            make_layer("markov", bad)


def test_saved_model_keeps_the_setting(tmp_path, monkeypatch):
    """The setting survives a .keras file on every backend; on JAX and
    PyTorch it has no effect: the compiled loop never runs."""
    calls = count_compiled_calls(monkeypatch)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((T, F)), make_layer("markov", True, return_switches=False),
    ])
    x, _ = data()
    want = _helpers.to_numpy(model.predict(x, verbose=0))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[0].loop_jit_compile is True
    np.testing.assert_allclose(
        _helpers.to_numpy(loaded.predict(x, verbose=0)), want,
        rtol=1e-6, atol=1e-7)
    if BACKEND != "tensorflow":
        assert calls == []


# ---------------------------------------------------------- distributed
MIRRORED = textwrap.dedent("""
    import json, os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np, keras_mrnn
    from keras_mrnn import _rnn
    calls = []
    original = _rnn.SteppedRNN._compiled_loop
    def spy(self, *args):
        calls.append(1)
        return original(self, *args)
    _rnn.SteppedRNN._compiled_loop = spy
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 3)).astype("float32")
    y = x[:, :, :1].sum(axis=1)
    def build(batch_size):
        keras.utils.set_random_seed(1)
        inputs = keras.Input((6, 3), batch_size=batch_size)
        h = keras_mrnn.MarkovLSTM(
            8, num_states=3, temperature=100.0, straight_through=False,
            seed=2, stateful=batch_size is not None,
            loop_jit_compile=True)(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1)(h))
        model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=False)
        return model
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {"replicas": strategy.num_replicas_in_sync}
    for name, single_batch, replica_batch in [
            ("markov", None, None), ("markov_stateful", 16, 8)]:
        fit = dict(batch_size=16, epochs=2, shuffle=False, verbose=0)
        single = build(single_batch)
        weights = single.get_weights()
        one = single.fit(x, y, **fit).history["loss"]
        with strategy.scope():
            mirrored = build(replica_batch)
        mirrored.set_weights(weights)
        del calls[:]
        two = mirrored.fit(x, y, **fit).history["loss"]
        results[name] = {"single": one, "mirrored": two,
                         "compiled_in_replicas": len(calls)}
    print(json.dumps(results))
""")


@slow
@tensorflow_only(
    "the XLA-compiled loop (loop_jit_compile) in each replica of "
    "tf.distribute.MirroredStrategy: TensorFlow's")
def test_compiled_loop_under_mirrored_strategy_matches_one_device():
    """MirroredStrategy over 2 logical CPUs (in a subprocess: the devices
    must be set before TensorFlow starts), model not XLA-compiled (Keras's
    'auto' under a strategy), loop compiled: it is compiled in each
    replica, and the per-epoch losses match one device, as in
    test_reliability's test of the uncompiled loop. (Model-level
    jit_compile=True under MirroredStrategy fails inside TensorFlow on
    logical CPUs even for keras.layers.LSTM, so it is not tested.)"""
    results = _helpers.last_json_line(
        _helpers.run_python("-c", MIRRORED, timeout=500).stdout)
    assert results["replicas"] == 2
    for name in ("markov", "markov_stateful"):
        single = np.array(results[name]["single"])
        mirrored = np.array(results[name]["mirrored"])
        # One compiled loop per replica and trace (fit's train function).
        assert results[name]["compiled_in_replicas"] >= 2, name
        assert np.all(np.isfinite(single)) and single[1] < single[0], name
        np.testing.assert_allclose(mirrored, single, rtol=2e-3,
                                   err_msg=name)


@tensorflow_only(
    "the XLA-compiled loop's gradient (loop_jit_compile) under "
    "mixed_float16, against a model-level XLA tf.function: TensorFlow's")
@pytest.mark.parametrize("kind", ["markov", "vrnn"])
def test_compiled_loop_under_mixed_float16(kind):
    """Under a mixed_float16 policy the compiled loop's gradient (traced
    outside the layer's call) reads the weights in float16 like its
    forward pass, and matches the uncompiled loop in a model-level XLA
    function to float16 precision."""
    keras.config.set_dtype_policy("mixed_float16")
    try:
        plain, compiled = twins(kind)
        x, mask = data()
        want = tf.function(
            lambda v: outputs_loss_and_grads(plain, v, mask, True),
            jit_compile=True, autograph=False)(x)
        got = outputs_loss_and_grads(compiled, x, mask, True)
    finally:
        keras.config.set_dtype_policy("float32")
    assert [g.dtype for g in got] == [w.dtype for w in want]
    # float16 keeps 11 bits: ~5e-4 relative per rounding, and the two
    # programs round at different places.
    for i, (a, b) in enumerate(zip(got, want)):
        a, b = (np.asarray(v, "float32") for v in (a, b))
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2 * scale,
                                   err_msg=f"item {i}")
