"""Gumbel-softmax sampling of categorical switches.

These functions are the maths behind the switch of `MarkovLSTMCell`; they
are public so users can reuse them in their own cells.
"""

import keras
from keras import ops

from keras_mrnn import _validation as check

# Uniform draws are kept away from 0 and 1 so that -log(-log(u)) is finite.
_UNIFORM_EPS = 1e-7


def sample_gumbel(shape, seed=None, dtype="float32"):
    """Draws standard Gumbel(0, 1) noise.

    Args:
        shape: Shape of the noise tensor.
        seed: A `keras.random.SeedGenerator` (use one inside layers and loops,
            so that every call draws new noise), an integer or `None`.
        dtype: Floating dtype of the result.

    Returns:
        A tensor of the given shape with i.i.d. Gumbel(0, 1) entries.

    Example:

    >>> g = keras_mrnn.gumbel.sample_gumbel((2, 3), seed=1)
    >>> tuple(g.shape)
    (2, 3)
    """
    u = keras.random.uniform(
        shape, minval=_UNIFORM_EPS, maxval=1.0 - _UNIFORM_EPS, dtype=dtype,
        seed=seed,
    )
    return -ops.log(-ops.log(u))


def softmax(logits):
    """Softmax over the last axis from elementary ops.

    TF's fused (oneDNN) softmax costs about a millisecond per call on tiny
    `(batch, K)` switch logits, once per recurrent step; this costs
    microseconds.

    Args:
        logits: Tensor `(..., num_classes)`.

    Returns:
        A tensor shaped like `logits` whose rows lie on the simplex.

    Example:

    >>> keras.ops.convert_to_numpy(keras_mrnn.gumbel.softmax(np.zeros((1, 4))))
    array([[0.25, 0.25, 0.25, 0.25]]...)
    """
    logits = ops.convert_to_tensor(logits)
    shifted = logits - ops.stop_gradient(
        ops.max(logits, axis=-1, keepdims=True)
    )
    weights = ops.exp(shifted)
    return weights / ops.sum(weights, axis=-1, keepdims=True)


def gumbel_softmax(logits, temperature=1.0, hard=False, seed=None,
                   noise=None):
    """Draws a relaxed one-hot sample from the Gumbel-softmax distribution.

    `softmax((logits + g) / temperature)` with `g` standard Gumbel noise
    (Jang et al., 2017; Maddison et al., 2017). Low temperatures give
    samples close to one-hot vectors, high temperatures close to uniform.

    Args:
        logits: Tensor `(..., num_classes)` of unnormalized log-probabilities.
        temperature: Positive scalar (float or tensor).
        hard: If `True`, return the one-hot vector of the sample's argmax in
            the forward pass with the gradient of the soft sample
            (straight-through estimator).
        seed: A `keras.random.SeedGenerator`, an integer or `None`.
        noise: Optional Gumbel(0, 1) noise shaped like `logits`, drawn
            beforehand (e.g. for all steps of a sequence at once); `seed` is
            then unused.

    Returns:
        A tensor shaped like `logits` whose rows lie on the simplex.

    Example:

    >>> z = keras_mrnn.gumbel.gumbel_softmax(
    ...     np.zeros((4, 3)), temperature=0.5, seed=0)
    >>> np.allclose(np.sum(keras.ops.convert_to_numpy(z), axis=-1), 1.0)
    True
    """
    if isinstance(temperature, (int, float)):
        check.positive_float("temperature", temperature)
    logits = ops.convert_to_tensor(logits)
    if noise is None:
        noise = sample_gumbel(
            ops.shape(logits), seed=seed, dtype=logits.dtype
        )
    soft = softmax((logits + ops.cast(noise, logits.dtype)) / temperature)
    if not hard:
        return soft
    return straight_through(soft)


def straight_through(soft):
    """One-hot of `argmax(soft)` forward, gradient of `soft` backward.

    Args:
        soft: Tensor `(..., num_classes)` of probabilities.

    Returns:
        A one-hot tensor shaped like `soft` that carries `soft`'s gradient.

    Example:

    >>> keras.ops.convert_to_numpy(
    ...     keras_mrnn.gumbel.straight_through(np.array([[0.2, 0.8]])))
    array([[0., 1.]]...)
    """
    soft = ops.convert_to_tensor(soft)
    hard = ops.one_hot(
        ops.argmax(soft, axis=-1), ops.shape(soft)[-1], dtype=soft.dtype
    )
    return soft + ops.stop_gradient(hard - soft)
