"""Argument checks shared by the package's layers (private).

Each raises early, at construction or build, with the argument's name and the
value received, instead of a deep TensorFlow error later.
"""

import math
import numbers


def _integer(name, value, minimum, kind):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `{name}` must be a {kind} integer. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    if value < minimum:
        raise ValueError(
            f"Argument `{name}` must be a {kind} integer. "
            f"Received: {name}={value!r}."
        )
    return int(value)


def positive_int(name, value):
    return _integer(name, value, 1, "positive")


def non_negative_int(name, value):
    return _integer(name, value, 0, "non-negative")


def boolean(name, value):
    # bool("False") is True: only real booleans (and NumPy's) are accepted.
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise TypeError(
            f"Argument `{name}` must be a boolean. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    return bool(value)


def optional_seed(name, value):
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, numbers.Integral)
    ):
        raise TypeError(
            f"Argument `{name}` must be an integer or None. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    return value


def positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a positive number. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(
            f"Argument `{name}` must be a positive, finite number. "
            f"Received: {name}={value!r}."
        )
    return float(value)


def non_negative_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a non-negative number. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(
            f"Argument `{name}` must be a non-negative, finite number. "
            f"Received: {name}={value!r}."
        )
    return float(value)


def rate(name, value):
    value = non_negative_float(name, value)
    if value >= 1.0:
        raise ValueError(
            f"Argument `{name}` must be in [0, 1). Received: {name}={value!r}."
        )
    return value


def choice(name, value, options):
    if value not in options:
        raise ValueError(
            f"Argument `{name}` must be one of {sorted(options)}. "
            f"Received: {name}={value!r}."
        )
    return value


def sequence_shape(layer_name, shape):
    """Checks that a recurrent layer's input is (batch, time, features)."""
    if shape is None or len(shape) != 3:
        raise ValueError(
            f"Layer '{layer_name}' expects 3-D input of shape "
            f"(batch, time, features). Received input with shape {shape}."
        )
    if shape[-1] is None:
        raise ValueError(
            f"Layer '{layer_name}' needs a known number of features (the last "
            f"dimension of its input). Received input with shape {shape}."
        )


def _dims(shape):
    return tuple(None if d is None else int(d) for d in shape)


def mask_shape(layer_name, mask_shape, inputs_shape):
    """Checks that a `mask` is `(batch, time)` for inputs `(batch, time,
    ...)`. Only known dimensions are compared: a `None` one, or a
    `mask_shape` of unknown rank (TensorFlow), passes."""
    try:
        received = _dims(mask_shape)
    except (TypeError, ValueError):  # A TensorShape of unknown rank.
        return
    inputs_shape = _dims(inputs_shape)
    expected = inputs_shape[:2]
    if len(received) != 2 or any(
        r is not None and e is not None and r != e
        for r, e in zip(received, expected)
    ):
        raise ValueError(
            f"Layer '{layer_name}': `mask` must have shape (batch, time) = "
            f"{expected}. Received shape {received}. The inputs have shape "
            f"{inputs_shape}."
        )
