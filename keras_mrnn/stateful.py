"""Helpers for stateful recurrent models.

Keras 3 models have no `reset_states()`, and a stateful layer fed a last batch
smaller than its declared batch size can silently broadcast it over all state
rows (see KERAS_NOTES). The functions here close those gaps.
"""

import tensorflow as tf


def check_stateful_batch_size(layer, sequences):
    """Fails loudly when a stateful layer gets a batch of the wrong size.

    Static shapes are checked at trace time (`ValueError`); dynamic ones (the
    batch dimension of a `tf.data` pipeline inside `fit`) by a graph assertion
    whose message names the layer and both sizes, and by `tf.ensure_shape`
    so the check also holds in XLA-compiled steps, where shapes are static.

    Args:
        layer: A stateful `keras.layers.RNN` (its states must exist).
        sequences: The layer's input tensor `(batch, time, features)`.

    Returns:
        `sequences`, unchanged but guarded by the check.

    Example:

    >>> layer = keras_mrnn.MarkovLSTM(4, stateful=True)
    >>> layer.build((2, 5, 3))
    >>> x = keras_mrnn.stateful.check_stateful_batch_size(
    ...     layer, np.zeros((2, 5, 3), "float32"))
    """
    if layer.states is None:
        return sequences
    expected = int(layer.states[0].shape[0])
    actual = sequences.shape[0]
    message = (
        f"Layer '{layer.name}' is stateful with batch size {expected}, but "
        "received a batch of a different size. Every batch of a stateful "
        "model must have exactly the declared batch size: make the number of "
        "samples a multiple of it (keras_mrnn.stateful.make_stateful_batches) "
        "or use drop_remainder=True."
    )
    if actual is not None:
        if int(actual) != expected:
            raise ValueError(f"{message} Received batch size: {actual}.")
        return sequences
    check = tf.debugging.assert_equal(
        tf.shape(sequences)[0], expected, message=message
    )
    with tf.control_dependencies([check]):
        sequences = tf.identity(sequences)
    rank = len(sequences.shape)
    return tf.ensure_shape(sequences, (expected,) + (None,) * (rank - 1))


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
    return iter(model._flatten_layers(include_self=True, recursive=True))


def reset_states(model):
    """Resets the states of every stateful layer in a model.

    Keras 3 models have no `reset_states()`; this walks nested models and
    wrappers such as `Bidirectional` and calls `reset_state()` on each
    stateful layer.

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
    count = 0
    for layer in iter_layers(model):
        if getattr(layer, "stateful", False) and hasattr(layer, "reset_state"):
            if getattr(layer, "states", None) is not None:
                layer.reset_state()
                count += 1
    return count
