"""The guard a stateful layer runs on every batch (private).

The package's layers call `check_stateful_batch_size` in `call`; users reach it
as `keras_mrnn.stateful.check_stateful_batch_size`.
"""

import re

from keras import tree

from keras_mrnn import _backend


def check_stateful_batch_size(layer, sequences):
    """Fails loudly when a stateful layer gets a batch of the wrong size.

    Without this check, Keras broadcasts a last batch of 1 over all the
    state rows of a stateful layer (silently corrupting them) and fails with
    an obscure `Incompatible shapes` error for other sizes.

    - A static batch size (eager calls, `drop_remainder=True` datasets,
      and every batch on JAX and PyTorch) is checked at trace time:
      `ValueError`.
    - A dynamic one (the batch dimension of the `tf.data` pipeline inside
      `fit`, `evaluate` and `predict`) by a graph assertion whose message
      names the layer and both sizes: `tf.errors.InvalidArgumentError`.
    - In an XLA-compiled step (`jit_compile=True`, Keras's default on a
      GPU) XLA drops `Assert` ops, and Keras traces the step once with an
      unknown batch size, so no Python check can see the size. The check is
      then a `tf.ensure_shape`, which XLA evaluates when it compiles the
      step for the batch's concrete shape, on a tensor whose name spells
      the message (op names allow no spaces). The error is a
      `tf.errors.InvalidArgumentError` whose first line reads (layer
      `markov_lstm`, batch size 4, a batch of 1 of 7 steps of 3 features):
      `Shape of tensor Layer_markov_lstm_is_stateful_with_batch_size_4-
      every_batch_must_have_4_samples-make_the_number_of_samples_a_multiple
      _of_4_with_keras_mrnn.stateful.make_stateful_batches_or_batch_a_tf.data
      _pipeline_with_drop_remainder-received_batch_shape [1,7,3] is not
      compatible with expected shape [4,?,?].` (one word, wrapped here),
      followed by TensorFlow's trace of where the op was defined.

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
    if getattr(layer, "states", None) is None:
        return sequences
    expected = int(tree.flatten(layer.states)[0].shape[0])
    actual = sequences.shape[0]
    message = (
        f"Layer '{layer.name}' is stateful with batch size {expected}, but "
        "received a batch of a different size. Every batch of a stateful "
        "model must have exactly the declared batch size (a smaller last "
        "batch would be broadcast over, or clash with, the stored states): "
        "make the number of samples a multiple of it "
        "(keras_mrnn.stateful.make_stateful_batches) or batch a tf.data "
        "pipeline with drop_remainder=True."
    )
    replicas = _backend.replicas_in_sync()
    if replicas > 1:
        message += (
            f" A tf.distribute strategy with {replicas} replicas is "
            f"active: each replica gets 1/{replicas} of the global batch, "
            "so declare the per-replica batch size in the Input and fit "
            f"with batch_size = {replicas} * that size."
        )
    if actual is not None:
        if int(actual) != expected:
            if _backend.name() == "jax":
                advice = (
                    "On JAX, Keras detaches the model's variables while "
                    "fit, evaluate or predict runs and does not reattach them "
                    "after an error: call model.jax_state_sync() before "
                    "using the model again (when the first batch of the call "
                    "failed, Keras has lost them: reload the model)."
                )
            else:
                advice = (
                    "If this was raised inside fit, Keras keeps the train "
                    "function whose tracing failed: call "
                    "model.make_train_function(force=True) or compile again "
                    "before the next fit."
                )
            raise ValueError(
                f"{message} Received batch size: {actual}. ({advice})"
            )
        return sequences
    # Only TensorFlow traces with an unknown batch size (JAX and PyTorch
    # see every batch's shape, so the check above always runs there).
    return _backend.guard_dynamic_batch(
        sequences, expected, message,
        _xla_message(layer.name, expected, replicas),
    )


def _xla_message(layer_name, expected, replicas):
    """The guard's message spelled as a TensorFlow op name (see
    `check_stateful_batch_size`): letters, digits and `_.-` only."""
    layer_name = re.sub(r"[^A-Za-z0-9_.-]", "_", layer_name)
    words = (
        f"Layer_{layer_name}_is_stateful_with_batch_size_{expected}"
        f"-every_batch_must_have_{expected}_samples"
        f"-make_the_number_of_samples_a_multiple_of_{expected}"
        "_with_keras_mrnn.stateful.make_stateful_batches"
        "_or_batch_a_tf.data_pipeline_with_drop_remainder"
    )
    if replicas > 1:
        words += (
            f"-with_{replicas}_replicas_declare_the_per-replica_batch_size"
            f"_and_fit_with_{replicas}_times_it"
        )
    return words + "-received_batch_shape"
