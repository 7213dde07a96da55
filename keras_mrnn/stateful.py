"""Helpers for stateful recurrent models.

Keras 3 models have no `reset_states()`, `fit` never resets states between
epochs, validation batches advance the training states, and a stateful layer
fed a last batch smaller than its declared batch size can silently broadcast
it over all state rows (see docs/KERAS_NOTES.md). The functions here close
those gaps:

- `check_stateful_batch_size`: the guard the package's layers run in `call`
  (defined in `keras_mrnn._stateful_guard`; exported here for users' own
  stateful layers).
- `make_stateful_batches` / `merge_stateful_batches`: lay a long series out
  so that sample `i` of batch `j` continues sample `i` of batch `j - 1`, and
  back.
- `reset_states`, `get_states`, `set_states`, `preserved_states`,
  `evaluate_preserving_states`: reach the state variables of every stateful
  RNN layer of a model, including inside nested models and wrappers.

Non-finite inputs: the recurrent layers do not check their inputs (a check
would cost a reduction per batch). A NaN in sample `i` makes the outputs of
sample `i` NaN from that step on; an inf saturates its gates, so its
outputs change and may stay finite (silently meaningless) or become NaN. In
a stateful layer either poisons state row `i` until the states are reset.
The other samples of the batch are unaffected (in inference; in training a
non-finite loss makes the whole update non-finite). `make_stateful_batches`
rejects non-finite series early; check other inputs with
`np.isfinite(x).all()`, and use `keras.callbacks.TerminateOnNaN` to stop a
run whose loss became non-finite.
"""

import contextlib
import warnings

import keras
import numpy as np
from keras import tree

from keras_mrnn import _backend
from keras_mrnn import _validation as check
from keras_mrnn._stateful_guard import check_stateful_batch_size  # noqa: F401



def iter_layers(model):
    """Yields a model and every layer inside it, recursively.

    Reaches layers inside nested models, `Bidirectional` and other wrappers
    and the cells of `keras.layers.RNN` layers.

    Args:
        model: A `keras.layers.Layer` or `keras.Model`.

    Returns:
        A generator of layers, `model` first.

    Example:

    >>> model = keras.Sequential([keras.layers.Bidirectional(
    ...     keras_mrnn.MarkovLSTM(4))])
    >>> any(isinstance(l, keras_mrnn.MarkovLSTMCell)
    ...     for l in keras_mrnn.stateful.iter_layers(model))
    True
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "Argument `model` must be a keras.Model or keras.layers.Layer. "
            f"Received: model={model!r} of type {type(model).__name__}."
        )
    return iter(model._flatten_layers(include_self=True, recursive=True))


def stateful_layers(model):
    """Returns the stateful recurrent layers of a model whose states exist.

    Args:
        model: A `keras.Model` or layer.

    Returns:
        A list of `keras.layers.RNN` instances with `stateful=True` that
        have been built (each once, in model order; the forward and backward
        layers of a `Bidirectional` appear separately).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(2, 5, 3)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True)])
    >>> len(keras_mrnn.stateful.stateful_layers(model))
    1
    """
    return [
        layer for layer in iter_layers(model)
        if isinstance(layer, keras.layers.RNN)
        and layer.stateful
        and getattr(layer, "states", None) is not None
    ]


def state_variables(model):
    """Returns the state variables of every stateful RNN layer of a model.

    These variables are not in `model.weights` (Keras does not track or save
    them). On JAX, inside `fit` or after an error in one of its steps, the
    model's variables are first written back from the state Keras's JAX
    trainer carries (`model.jax_state_sync()`), so that they can be read
    and set.

    Args:
        model: A `keras.Model` or layer.

    Returns:
        A flat list of `keras.Variable`, each once, in model order.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(2, 5, 3)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True)])
    >>> [tuple(v.shape) for v in keras_mrnn.stateful.state_variables(model)]
    [(2, 4), (2, 4)]
    """
    _backend.sync_training_state(model)
    variables, seen = [], set()
    for layer in stateful_layers(model):
        for variable in tree.flatten(layer.states):
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    return variables


def reset_states(model):
    """Resets the states of every stateful layer in a model to zeros.

    Keras 3 models have no `reset_states()`; this walks nested models and
    wrappers such as `Bidirectional` and zeroes the state variables of each
    stateful `keras.layers.RNN` (also those of a stateful RNN of stacked
    cells, whose own `reset_state()` fails in Keras 3.15).

    Args:
        model: A `keras.Model` or layer.

    Returns:
        The number of layers whose states were reset.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(2, 5, 3)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True)])
    >>> keras_mrnn.reset_states(model)
    1
    """
    layers = stateful_layers(model)
    for variable in state_variables(model):
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    return len(layers)


def get_states(model):
    """Returns a copy of the states of every stateful layer of a model.

    Under a `tf.distribute` strategy, each replica keeps its own copy of the
    states (for its share of the batch); this returns the first replica's.

    Args:
        model: A `keras.Model` or layer.

    Returns:
        A list of NumPy arrays, in the order of `state_variables(model)`.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(2, 5, 3)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True)])
    >>> saved = keras_mrnn.stateful.get_states(model)
    >>> [s.shape for s in saved]
    [(2, 4), (2, 4)]
    >>> _ = model.predict(np.ones((2, 5, 3)), batch_size=2, verbose=0)
    >>> keras_mrnn.stateful.set_states(model, saved)
    """
    return [np.array(keras.ops.convert_to_numpy(v)) for v in
            state_variables(model)]


def _replica_values(variable):
    """The per-replica copies of a variable (one outside distribution)."""
    value = getattr(variable, "value", variable)
    # Only TensorFlow's values have a strategy; the Keras variable itself
    # reads (`numpy`) and assigns on every backend.
    strategy = getattr(value, "distribute_strategy", None)
    if strategy is None:
        return [variable]
    return list(strategy.experimental_local_results(value))


def set_states(model, states):
    """Sets the states of every stateful layer of a model.

    Args:
        model: A `keras.Model` or layer.
        states: A list of arrays as returned by `get_states(model)`, of the
            same length and shapes. (Under a `tf.distribute` strategy every
            replica's copy gets these values.)

    Returns:
        None.

    Raises:
        ValueError: if the number or shapes of `states` do not match.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(2, 5, 3)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True)])
    >>> saved = keras_mrnn.stateful.get_states(model)  # zeros
    >>> _ = model.predict(np.ones((2, 5, 3)), batch_size=2, verbose=0)
    >>> keras_mrnn.stateful.set_states(model, saved)
    >>> bool(keras_mrnn.stateful.get_states(model)[0].any())
    False
    """
    variables = state_variables(model)
    if isinstance(states, np.ndarray) or not isinstance(
        states, (list, tuple)
    ):
        raise TypeError(
            "Argument `states` must be a list of arrays, as returned by "
            f"get_states(). Received: states of type {type(states).__name__}."
        )
    if len(states) != len(variables):
        raise ValueError(
            f"Argument `states` must hold {len(variables)} arrays (one per "
            f"state variable of the model). Received {len(states)}."
        )
    values = []
    for i, (variable, value) in enumerate(zip(variables, states)):
        value = np.asarray(value)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Argument `states[{i}]` must have shape "
                f"{tuple(variable.shape)} (variable '{variable.path}'). "
                f"Received shape {value.shape}."
            )
        values.append(value)
    for variable, value in zip(variables, values):
        variable.assign(value.astype(variable.dtype))


@contextlib.contextmanager
def preserved_states(model):
    """Context manager that restores a model's states on exit.

    Snapshots the state variables of every stateful layer on entry and
    writes them back on exit (also when an exception is raised), so that
    evaluation or prediction inside the block does not disturb the states
    that training carries from batch to batch. Under a `tf.distribute`
    strategy every replica's copy is saved and restored.

    Args:
        model: A `keras.Model` or layer.

    Returns:
        A context manager yielding the snapshot (a list of NumPy arrays).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(2, 5, 3)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True), keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> x_val, y_val = np.ones((2, 5, 3)), np.ones((2, 1))
    >>> _ = model.predict(x_val, batch_size=2, verbose=0)  # states now set
    >>> saved = keras_mrnn.stateful.get_states(model)
    >>> with keras_mrnn.stateful.preserved_states(model):
    ...     _ = keras_mrnn.reset_states(model)
    ...     loss = model.evaluate(x_val, y_val, batch_size=2, verbose=0)
    >>> np.array_equal(keras_mrnn.stateful.get_states(model)[0], saved[0])
    True
    """
    variables = state_variables(model)
    # Under a tf.distribute strategy each replica holds its own copy of the
    # states (for its part of the batch): save and restore every copy.
    copies = [
        [(c, np.array(c.numpy())) for c in _replica_values(v)]
        for v in variables
    ]
    try:
        yield [pairs[0][1].copy() for pairs in copies]
    finally:
        for pairs in copies:
            for component, value in pairs:
                component.assign(value)


def evaluate_preserving_states(model, *args, reset=True, **kwargs):
    """`model.evaluate` that leaves the model's recurrent states unchanged.

    In Keras, evaluating a stateful model advances the same state variables
    that training carries across batches. This helper snapshots them,
    optionally resets them to zeros (so that the evaluation data is read as
    a fresh sequence), evaluates, and restores the snapshot.

    Args:
        model: A compiled `keras.Model`.
        *args: Positional arguments of `model.evaluate` (`x`, `y`, ...).
        reset: If `True` (default), evaluate from zero states; if `False`,
            evaluate from the current training states (the evaluation data
            then continues the training sequences).
        **kwargs: Keyword arguments of `model.evaluate` (`batch_size`,
            `return_dict`, ...).

    Returns:
        What `model.evaluate` returns.

    Example:

    >>> series = np.random.random((401, 1)).astype("float32")
    >>> x_val, y_val = keras_mrnn.stateful.make_stateful_batches(
    ...     series[:-1], series[1:], batch_size=4, window=50)
    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(4, 50, 1)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True, return_sequences=True),
    ...     keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> loss = keras_mrnn.stateful.evaluate_preserving_states(
    ...     model, x_val, y_val, batch_size=4, verbose=0)
    >>> bool(keras_mrnn.stateful.get_states(model)[0].any())  # still zeros
    False
    """
    with preserved_states(model):
        if reset:
            reset_states(model)
        return model.evaluate(*args, **kwargs)


def _check_batching(batch_size, window):
    return (check.positive_int("batch_size", batch_size),
            check.positive_int("window", window))


def make_stateful_batches(*series, batch_size, window, check_finite=True):
    """Lays long series out as batches for a stateful model.

    Splits each series (time first) into `batch_size` contiguous streams and
    cuts each stream into windows of `window` steps, so that sample `i` of
    batch `j` continues sample `i` of batch `j - 1`. Feed the result to
    `fit`/`evaluate`/`predict` with the same `batch_size` and
    `shuffle=False`. The length is trimmed to
    `batch_size * window * (len // (batch_size * window))` steps, with a
    `UserWarning` that says which steps were dropped (the end of the series).
    Several series (inputs and targets) are laid out identically.

    With `N` kept steps, `L = N // batch_size` and `j`-th batch, sample `i`
    holds steps `i * L + j * window ... i * L + (j + 1) * window - 1`.

    Args:
        *series: One or more arrays of the same length along axis 0 (time),
            e.g. `(time, features)` inputs and `(time, targets)` targets.
        batch_size: Positive integer, the batch size of the stateful model.
        window: Positive integer, the time steps per sample (the model's
            sequence length).
        check_finite: If `True` (default), raise `ValueError` when a
            floating series holds NaN or inf (a stateful layer would carry it
            in its states to every later batch).

    Returns:
        An array `(num_batches * batch_size, window, *series.shape[1:])` per
        series (a tuple when several are given).

    Raises:
        ValueError: if the series are too short for one batch, have
            different lengths, or hold non-finite values.

    Example:

    >>> t = np.arange(1000, dtype="float32")
    >>> x, y = keras_mrnn.stateful.make_stateful_batches(
    ...     np.sin(t)[:, None], np.cos(t)[:, None], batch_size=4, window=50)
    >>> x.shape
    (20, 50, 1)
    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(4, 50, 1)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True, return_sequences=True),
    ...     keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> history = model.fit(x, y, batch_size=4, shuffle=False, verbose=0,
    ...                     callbacks=[keras_mrnn.callbacks.ResetStates()])
    """
    batch_size, window = _check_batching(batch_size, window)
    if not series:
        raise ValueError(
            "make_stateful_batches needs at least one series. Received none."
        )
    arrays = []
    for i, s in enumerate(series):
        array = np.asarray(s)
        if array.ndim < 1:
            raise ValueError(
                f"Argument `series[{i}]` must have a time axis (axis 0). "
                f"Received a scalar: {s!r}."
            )
        if check_finite and np.issubdtype(array.dtype, np.floating):
            bad = np.flatnonzero(
                ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
            )
            if bad.size:
                raise ValueError(
                    f"Argument `series[{i}]` holds NaN or inf at "
                    f"{bad.size} time step(s), first at index {bad[0]}. "
                    "A stateful layer would carry them in its states to all "
                    "later batches. Clean the series, or pass "
                    "check_finite=False."
                )
        arrays.append(array)
    length = len(arrays[0])
    lengths = [len(a) for a in arrays]
    if any(n != length for n in lengths):
        raise ValueError(
            "All series must have the same length along axis 0. Received "
            f"lengths {lengths}."
        )
    per_stream = (length // batch_size) // window * window
    if per_stream == 0:
        raise ValueError(
            f"The series has {length} time steps, fewer than "
            f"batch_size * window = {batch_size} * {window} = "
            f"{batch_size * window}, the minimum for one batch."
        )
    kept = per_stream * batch_size
    if kept < length:
        warnings.warn(
            f"make_stateful_batches dropped the last {length - kept} of "
            f"{length} time steps (indices {kept} to {length - 1}) so that "
            f"the series splits into batch_size={batch_size} streams of "
            f"{per_stream} steps ({per_stream // window} windows of "
            f"window={window}).",
            UserWarning,
            stacklevel=2,
        )
    num_batches = per_stream // window
    results = []
    for array in arrays:
        rest = array.shape[1:]
        streams = array[:kept].reshape(
            (batch_size, num_batches, window) + rest
        )
        batches = np.swapaxes(streams, 0, 1)
        results.append(np.ascontiguousarray(
            batches.reshape((num_batches * batch_size, window) + rest)
        ))
    return results[0] if len(results) == 1 else tuple(results)


def merge_stateful_batches(batches, batch_size):
    """Puts the output of a stateful model back into time order.

    The inverse of `make_stateful_batches` for one series: takes an array
    `(num_batches * batch_size, window, ...)` (e.g. `model.predict` with
    `return_sequences=True`) and returns `(num_batches * batch_size * window,
    ...)` in the order of the original series.

    Args:
        batches: Array `(num_batches * batch_size, window, ...)`.
        batch_size: Positive integer, the batch size used to make them.

    Returns:
        A NumPy array `(num_batches * batch_size * window, ...)`.

    Example:

    >>> x = keras_mrnn.stateful.make_stateful_batches(
    ...     np.arange(40.0), batch_size=4, window=5)
    >>> keras_mrnn.stateful.merge_stateful_batches(x, batch_size=4)[:3]
    array([0., 1., 2.])
    """
    array = np.asarray(batches)
    if array.ndim < 2:
        raise ValueError(
            "Argument `batches` must have shape (samples, window, ...). "
            f"Received shape {array.shape}."
        )
    batch_size, window = _check_batching(batch_size, array.shape[1] or 1)
    if len(array) % batch_size:
        raise ValueError(
            f"Argument `batches` has {len(array)} samples, not a multiple of "
            f"batch_size={batch_size}."
        )
    num_batches = len(array) // batch_size
    rest = array.shape[2:]
    streams = np.swapaxes(
        array.reshape((num_batches, batch_size, window) + rest), 0, 1
    )
    return streams.reshape((num_batches * batch_size * window,) + rest)
