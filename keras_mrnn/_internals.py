"""Every private Keras name the package uses (private).

Keras 3 does not export the loop that `keras.layers.RNN` runs, nor the base
class that gives its cells dropout masks, so the package takes them from where
Keras itself does. Keeping them here means one file to mend when an upgrade
moves one, and `tests/test_internals.py` says which moved, by name. All of
them import on every backend; the TensorFlow-only names are in `_backend.py`.
"""

import keras


def _moved(name, error):
    return ImportError(
        f"keras_mrnn uses `{name}`, which this installation "
        f"(Keras {keras.version()}) does not have where keras_mrnn looks for "
        f"it ({error}). Install a Keras version keras_mrnn supports (see "
        f"pyproject.toml) or update keras_mrnn/_internals.py."
    )


try:
    # The recurrent loop of `keras.layers.RNN` (masking, unrolling, the
    # projected inputs under XLA), and the mixed-precision autocast scope the
    # layers open around it; `backend.rnn` is not exported under `keras.*`.
    from keras.src.backend import AutocastScope
    from keras.src.backend import get_autocast_scope
    from keras.src.backend import rnn
except ImportError as error:  # pragma: no cover
    raise _moved("keras.src.backend.rnn", error) from error

try:
    # While Keras traces symbolically or statelessly (shape inference, the
    # stateless training step of JAX-style APIs) the compiled loop is skipped.
    from keras.src.backend.common.stateless_scope import in_stateless_scope
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope
except ImportError as error:  # pragma: no cover
    raise _moved("keras.src.backend.common.*_scope", error) from error

try:
    # The base class that gives `keras.layers.LSTMCell` its per-sequence
    # dropout masks; the Markov cell shares its masks the same way.
    from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell
except ImportError as error:  # pragma: no cover
    raise _moved("keras.src.layers.rnn.dropout_rnn_cell", error) from error

try:
    # A fresh int seed as `keras.random` draws it for a layer without one:
    # `VRNN.sample` draws from a new generator per call, like Keras's own ops.
    from keras.src.random.seed_generator import make_default_seed
except ImportError as error:  # pragma: no cover
    raise _moved("keras.src.random.seed_generator", error) from error
