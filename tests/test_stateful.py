"""Tests of keras_mrnn.stateful: layout of stateful batches, state resets
in nested models, the batch-size guard in fit/evaluate/predict (with and
without XLA), and state carrying end to end. The ResetStates and
StatefulEvaluation callbacks are tested in test_callbacks.py."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import keras_mrnn
from _helpers import (
    B, BACKEND, F, T, state_arrays, stateful_data, stateful_model,
    stateful_test_layer, tensorflow_only,
)
from keras_mrnn import stateful

# Run on every backend by .ci/run (see conftest.py). tf.data is there on
# every backend (Keras's trainers take its datasets); TensorFlow's own error
# types are only expected on TensorFlow.

KINDS = ["markov", "vrnn"]
# jit_compile=True in Model.compile: XLA on TensorFlow, where the guard is
# an EnsureShape whose error message is checked (XLA drops Assert ops).
XLA_GUARD = tensorflow_only(
    "the guard under TensorFlow's XLA (jit_compile=True: an EnsureShape and "
    "its InvalidArgumentError); JAX's fit is jitted whatever jit_compile "
    "says (the jit_compile=False cases check the guard there) and "
    "PyTorch's torch.compile takes minutes")


# ------------------------------------------------- make / merge batches
def test_make_stateful_batches_layout_against_indices():
    n, batch_size, window = 4 * 3 * 5, 4, 5  # 3 batches, no trimming
    series = np.arange(n, dtype="float32")[:, None] * np.array([1.0, -1.0])
    targets = np.arange(n) * 10
    x, y = stateful.make_stateful_batches(
        series, targets, batch_size=batch_size, window=window
    )
    assert x.shape == (12, window, 2) and y.shape == (12, window)
    per_stream = n // batch_size
    for j in range(3):
        for i in range(batch_size):
            sample = x[j * batch_size + i, :, 0]
            start = i * per_stream + j * window
            np.testing.assert_array_equal(
                sample, np.arange(start, start + window)
            )
            np.testing.assert_array_equal(
                y[j * batch_size + i], 10 * np.arange(start, start + window)
            )
            if j > 0:  # sample i of batch j continues sample i of batch j-1
                previous = x[(j - 1) * batch_size + i, -1, 0]
                assert sample[0] == previous + 1
    np.testing.assert_array_equal(x[..., 1], -x[..., 0])
    np.testing.assert_array_equal(
        stateful.merge_stateful_batches(x, batch_size), series
    )


def test_make_stateful_batches_trims_with_a_warning_that_says_what():
    series = np.arange(103.0)
    with pytest.warns(UserWarning) as record:
        x = stateful.make_stateful_batches(series, batch_size=4, window=6)
    # 103 // 4 = 25 steps per stream, cut to 24 = 4 windows of 6: 96 kept.
    message = str(record[0].message)
    assert "dropped the last 7 of 103" in message
    assert "indices 96 to 102" in message
    assert x.shape == (16, 6)
    np.testing.assert_array_equal(
        stateful.merge_stateful_batches(x, 4), series[:96]
    )


def test_make_stateful_batches_no_warning_when_nothing_is_dropped(recwarn):
    stateful.make_stateful_batches(np.zeros((40, 1)), batch_size=4, window=5)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(batch_size=0, window=2), ValueError, "batch_size=0"),
    (dict(batch_size=2.0, window=2), TypeError, "batch_size=2.0"),
    (dict(batch_size=2, window=True), TypeError, "window=True"),
    (dict(batch_size=8, window=4), ValueError, "fewer than"),
])
def test_make_stateful_batches_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        stateful.make_stateful_batches(np.zeros(20), **kwargs)


def test_make_stateful_batches_rejects_mismatch_and_non_finite():
    with pytest.raises(ValueError, match=r"lengths \[20, 19\]"):
        stateful.make_stateful_batches(
            np.zeros(20), np.zeros(19), batch_size=2, window=2
        )
    series = np.zeros((20, 2))
    series[13, 1] = np.nan
    with pytest.raises(ValueError, match="series\\[0\\].*first at index 13"):
        stateful.make_stateful_batches(series, batch_size=2, window=2)
    out = stateful.make_stateful_batches(
        series, batch_size=2, window=2, check_finite=False
    )
    assert np.isnan(out).sum() == 1


# -------------------------------------------- reset / get / set states
def nested_model():
    """Stateful Markov layer in a Bidirectional inside a nested Sequential,
    followed by a stateful RNN of stacked Keras cells."""
    inner = keras.Sequential([
        keras.Input(batch_shape=(B, T, F)),
        keras.layers.Bidirectional(stateful_test_layer(
            "markov", stateful=True, return_sequences=True)),
    ])
    inputs = keras.Input(batch_shape=(B, T, F))
    h = inner(inputs)
    h = keras.layers.RNN(
        [keras.layers.LSTMCell(3), keras.layers.LSTMCell(2)], stateful=True
    )(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


@pytest.mark.skipif(
    BACKEND == "jax",
    reason="Keras's own stateful RNN (the stacked LSTMCells) does not carry "
    "its states on JAX: its state variables are untracked (README Backends)")
def test_reset_states_reaches_nested_bidirectional_and_stacked_cells():
    model = nested_model()
    variables = stateful.state_variables(model)
    # 2 Markov layers x (h, c) + 2 stacked LSTM cells x (h, c).
    assert sorted(tuple(v.shape) for v in variables) == sorted(
        [(B, 6)] * 4 + [(B, 3)] * 2 + [(B, 2)] * 2
    )
    weights = {id(w) for w in model.weights}
    assert not any(id(v) in weights for v in variables)  # Keras fact
    model.predict(stateful_data(B)[0], batch_size=B, verbose=0)
    assert all(np.abs(s).sum() > 0 for s in state_arrays(model))
    assert keras_mrnn.reset_states(model) == 3
    assert all(np.abs(s).sum() == 0 for s in state_arrays(model))


def test_get_set_and_preserved_states_round_trip():
    model = stateful_model("markov")
    x, _ = stateful_data(8)
    model.predict(x[:B], batch_size=B, verbose=0)
    saved = stateful.get_states(model)
    with stateful.preserved_states(model) as snapshot:
        model.predict(x[B:], batch_size=B, verbose=0)
        changed = state_arrays(model)
    assert any(not np.allclose(a, b) for a, b in zip(changed, saved))
    for a, b, c in zip(state_arrays(model), saved, snapshot):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    stateful.set_states(model, changed)
    for a, b in zip(state_arrays(model), changed):
        np.testing.assert_array_equal(a, b)


def test_state_helpers_reject_bad_arguments():
    model = stateful_model("markov")
    with pytest.raises(TypeError, match="model=.*ndarray"):
        keras_mrnn.reset_states(np.zeros(3))
    with pytest.raises(ValueError, match="must hold 2 arrays.*Received 1"):
        stateful.set_states(model, [np.zeros((B, 6))])
    with pytest.raises(ValueError, match=r"states\[1\].*\(4, 6\).*\(3, 6\)"):
        stateful.set_states(model, [np.zeros((B, 6)), np.zeros((3, 6))])
    with pytest.raises(TypeError, match="list of arrays"):
        stateful.set_states(model, np.zeros((2, B, 6)))


# ---------------------------------------------------- the batch guard
@pytest.mark.parametrize("kind", KINDS)
def test_eager_call_with_wrong_batch_raises_value_error(kind):
    layer = stateful_test_layer(kind, stateful=True)
    layer(np.zeros((B, T, F), "float32"))
    with pytest.raises(ValueError, match="stateful with batch size 4.*: 1"):
        layer(np.zeros((1, T, F), "float32"))


class Recorder(keras.callbacks.Callback):
    """Records the states (and weights, in fit) after every batch."""

    def __init__(self):
        super().__init__()
        self.states, self.weights = [], []

    def _record(self, batch, logs=None):
        self.states.append(state_arrays(self.model))

    on_predict_batch_end = on_test_batch_end = _record

    def on_train_batch_end(self, batch, logs=None):
        self._record(batch)
        self.weights.append(self.model.get_weights())


@pytest.mark.parametrize("kind, jit_compile, calls", [
    ("markov", False, ("predict", "evaluate", "fit")),
    # Under XLA: the guard in a step that updates nothing (evaluate's is
    # predict's) and in one that does. Same guard code; XLA compiles are
    # slow.
    pytest.param("markov", True, ("predict", "fit"), marks=XLA_GUARD),
    ("vrnn", False, ("predict", "evaluate", "fit")),
    pytest.param("vrnn", True, ("predict",), marks=XLA_GUARD),
])
def test_last_batch_of_one_is_an_error_not_corrupted_states(
    kind, jit_compile, calls
):
    """9 samples with batch size 4: batches of 4, 4 and 1. Keras alone
    broadcasts the batch of 1 over the 4 state rows without an error; the
    guard must stop fit, evaluate and predict, leaving the states (and
    weights) as the 2 good batches left them. Without XLA the Assert's
    message names the layer and both sizes; under XLA (which drops Assert
    ops) the EnsureShape's message does, through the name of the checked
    tensor and the shape of the batch received (1 sample of 5 steps of 2
    features)."""
    if jit_compile:
        words = (
            rf"Shape of tensor Layer_{kind}\w*_is_stateful_with_batch_size_4"
            r"-every_batch_must_have_4_samples-.*make_stateful_batches.*"
            r"drop_remainder-received_batch_shape \[1,5,2\] is not "
            r"compatible with expected shape \[4,"
        )
    else:
        # (TensorFlow escapes the quotes around the layer's name.)
        words = (rf"Layer .{{1,2}}{kind}\w*.{{1,2}} is stateful with batch "
                 r"size 4.*make_stateful_batches")
    # Only TensorFlow traces with an unknown batch size (its runtime Assert
    # raises InvalidArgumentError); JAX and PyTorch see every batch's shape,
    # and the guard's ValueError says it all.
    if BACKEND == "tensorflow":
        error = tf.errors.InvalidArgumentError
    else:
        error = ValueError
        words = (rf"Layer '{kind}\w*' is stateful with batch size 4.*"
                 r"Received batch size: 1")
    x, y = stateful_data(9)
    model = stateful_model(kind, jit_compile=jit_compile)
    for call in calls:
        keras_mrnn.reset_states(model)
        recorder = Recorder()
        with pytest.raises(error, match=words):
            if call == "predict":
                model.predict(x, batch_size=B, verbose=0,
                              callbacks=[recorder])
            elif call == "evaluate":
                model.evaluate(x, y, batch_size=B, verbose=0,
                               callbacks=[recorder])
            else:
                model.fit(x, y, batch_size=B, shuffle=False, verbose=0,
                          callbacks=[recorder])
        assert len(recorder.states) == 2, call  # the 2 good batches ran
        for got, want in zip(state_arrays(model), recorder.states[-1]):
            np.testing.assert_array_equal(got, want)
            # Distinct rows: the refused batch of 1 was not broadcast.
            assert np.abs(got - got[:1]).max() > 1e-6
        if call == "fit":  # the refused step did not update the weights
            for got, want in zip(model.get_weights(), recorder.weights[-1]):
                np.testing.assert_array_equal(got, want)
    # With a whole number of batches everything runs.
    model.predict(x[:8], batch_size=B, verbose=0)


def test_static_batch_of_a_dataset_is_checked_at_trace_time():
    model = stateful_model("markov")
    x, y = stateful_data(6)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(
        3, drop_remainder=True
    )
    with pytest.raises(ValueError, match="batch size 4.*batch size: 3"):
        model.fit(dataset, verbose=0)
    # Keras keeps the train function whose tracing failed (its own stateful
    # LSTM too); the error message says so.
    model.make_train_function(force=True)
    good = tf.data.Dataset.from_tensor_slices((x[:4], y[:4])).batch(
        B, drop_remainder=True
    )
    model.fit(good, verbose=0)


# ----------------------------------- state carrying, end to end
@pytest.mark.parametrize("kind", KINDS)
def test_stateful_windows_equal_one_pass_over_each_stream(kind, kernel_tol):
    """make_stateful_batches + a stateful predict + merge_stateful_batches
    give, for each of the B streams, the outputs of a non-stateful layer
    with the same weights run over the whole stream at once (inference:
    Markov argmax switch, VRNN posterior-mean latent)."""
    window, num_batches = 3, 4
    length = B * window * num_batches
    series = np.random.default_rng(1).normal(size=(length, F)).astype(
        "float32")
    x = stateful.make_stateful_batches(series, batch_size=B, window=window)

    keras.utils.set_random_seed(0)
    chunked = stateful_test_layer(kind, stateful=True, return_sequences=True)
    model = keras.Sequential(
        [keras.Input(batch_shape=(B, window, F)), chunked]
    )
    out = model.predict(x, batch_size=B, verbose=0)
    merged = stateful.merge_stateful_batches(out, B)

    whole = stateful_test_layer(kind, return_sequences=True)
    streams = series.reshape(B, length // B, F)
    whole.build(streams.shape)
    whole.set_weights(chunked.get_weights())
    expected = keras.ops.convert_to_numpy(whole(streams, training=False))
    # predict is XLA-compiled on a GPU, the eager call is not: two kernel
    # paths over 12 steps (6.7e-5 apart on an H100; conftest).
    np.testing.assert_allclose(
        merged, expected.reshape(length, -1),
        **kernel_tol(rtol=1e-4, atol=1e-5)
    )
