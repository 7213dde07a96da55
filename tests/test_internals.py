"""The private Keras/TF names the package relies on are where it looks.

Keras's are imported in `keras_mrnn/_internals.py`, TensorFlow's in
`_backend.py` (on TensorFlow only); this test fails with
the name that moved when a Keras or TensorFlow upgrade moves one, instead of
letting a layer fail deep inside a training step.
"""

import inspect

import keras
import pytest

from keras_mrnn import _internals

# name in `_internals` -> what it must accept (by parameter name).
REQUIRED = {
    "rnn": ("step_function", "inputs", "initial_states", "mask", "unroll",
            "input_length", "go_backwards", "zero_output_for_mask",
            "return_all_outputs"),
    "AutocastScope": ("dtype",),
    "get_autocast_scope": (),
    "in_stateless_scope": (),
    "in_symbolic_scope": (),
    "make_default_seed": (),
}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_private_name_is_present_with_the_expected_parameters(name):
    thing = getattr(_internals, name)
    assert thing is not None, (
        f"keras_mrnn._internals.{name} could not be imported from this "
        f"Keras/TensorFlow (Keras {keras.version()}); update _internals.py"
    )
    assert callable(thing)
    parameters = inspect.signature(thing).parameters
    missing = [p for p in REQUIRED[name] if p not in parameters]
    assert not missing, (
        f"keras_mrnn._internals.{name} no longer takes {missing} "
        f"(Keras {keras.version()}); update _internals.py and its callers"
    )


def test_dropout_cell_mixin_still_gives_dropout_masks():
    # `MarkovLSTMCell` relies on these two methods of the mixin.
    for method in ("get_dropout_mask", "get_recurrent_dropout_mask"):
        assert callable(getattr(_internals.DropoutRNNCell, method, None)), (
            f"keras.src DropoutRNNCell lost {method} (Keras {keras.version()})"
        )
    assert issubclass(keras.layers.LSTMCell, _internals.DropoutRNNCell)


def test_moved_name_error_names_what_moved_and_the_keras_version():
    error = _internals._moved("keras.src.backend.rnn", ImportError("gone"))
    message = str(error)
    assert "keras.src.backend.rnn" in message
    assert keras.version() in message
    assert "_internals.py" in message


def test_no_module_imports_private_names_outside_internals():
    import pathlib

    package = pathlib.Path(_internals.__file__).parent
    offenders = []
    for path in package.glob("*.py"):
        if path.name in ("_internals.py", "_backend.py"):
            continue  # Keras's private names; TensorFlow's (lazily)
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0].strip()
            if not code.startswith(("import ", "from ")):
                continue  # prose may name them; imports may not
            if "keras.src" in code or "tensorflow.python" in code:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, offenders


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's private names, used on it only")
def test_tensorflow_private_names_are_where_backend_looks():
    # `_backend.py` imports these lazily, on TensorFlow only: an upgrade
    # that moves one must fail here, not in the XLA loop or the guard.
    from tensorflow.python.eager.record import stop_recording
    from tensorflow.python.ops.control_flow_util import (
        GraphOrParentsInXlaContext,
    )

    assert callable(stop_recording) and callable(GraphOrParentsInXlaContext)
