"""Normal and Bernoulli distributions in `keras.ops` (private).

What the package needs of `tfp.distributions`, for the backends whose arrays
TFP's TensorFlow distributions cannot take (JAX and PyTorch):
`_backend.distributions()` returns this module there and TFP on TensorFlow,
so both give the same interface: `Normal(loc, scale)`,
`Bernoulli(logits=..., dtype=...)` and `kl_divergence(p, q)`. Nothing here
samples: the package draws its noise before its recurrent loops (on JAX a
seed generator advanced inside `lax.scan` would repeat the same noise) and
reparameterizes it itself.

The formulas are TFP's, written to be stable in float32: the Bernoulli's
log-probability goes through `softplus`-type terms of the logits, never
through `log(sigmoid)`, and the KL through `expm1` of the log-scale
difference.
"""

import math

import keras
from keras import ops

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def _float_tensor(x, dtype=None):
    """`x` as a tensor of `dtype`; without one, of its own dtype if that is
    a float (else `floatx`: integer parameters would truncate the maths)."""
    x = ops.convert_to_tensor(x)
    if dtype is None and "float" not in keras.backend.standardize_dtype(
        x.dtype
    ):
        dtype = keras.backend.floatx()
    if dtype is not None:
        x = ops.cast(x, dtype)
    return x


class Normal:
    """The normal distribution `N(loc, scale^2)`, elementwise.

    `loc` and `scale` broadcast against each other and against the values
    given to `log_prob`. `scale` must be positive; it is not checked (the
    callers make it with `softplus(.) + min_scale` or `exp`).

    Args:
        loc: Tensor or number, the mean.
        scale: Tensor or number, the standard deviation.

    Example:

    >>> from keras_mrnn import _distributions
    >>> normal = _distributions.Normal(0.0, 2.0)
    >>> round(float(keras.ops.convert_to_numpy(normal.log_prob(1.0))), 6)
    -1.737086
    >>> float(keras.ops.convert_to_numpy(normal.mean()))
    0.0
    """

    def __init__(self, loc, scale):
        self.loc = _float_tensor(loc)
        self.scale = _float_tensor(scale, dtype=self.loc.dtype)

    def log_prob(self, x):
        """The log-density at `x`.

        Args:
            x: Tensor or number, broadcastable with `loc` and `scale`.

        Returns:
            `-((x - loc) / scale)^2 / 2 - log(scale) - log(2 pi) / 2`, in the
            distribution's dtype.
        """
        x = ops.cast(x, self.loc.dtype)
        standardized = (x - self.loc) / self.scale
        return (
            -0.5 * ops.square(standardized)
            - ops.log(self.scale)
            - _HALF_LOG_TWO_PI
        )

    def mean(self):
        """The mean, `loc` broadcast to the shape of `scale`.

        Returns:
            A tensor of the broadcast shape of `loc` and `scale`.
        """
        return self.loc + ops.zeros_like(self.scale)


class Bernoulli:
    """The Bernoulli distribution with `p = sigmoid(logits)`, elementwise.

    Only logits are taken: probabilities near 0 or 1 lose their precision
    as floats, logits do not.

    Args:
        logits: Tensor, the log-odds `log(p / (1 - p))`.
        dtype: The dtype of `mean()` (TFP's name for the dtype of the
            distribution's values). Defaults to that of `logits`.

    Example:

    >>> from keras_mrnn import _distributions
    >>> coin = _distributions.Bernoulli(logits=[0.0, 2.0], dtype="float32")
    >>> keras.ops.convert_to_numpy(coin.log_prob([1.0, 0.0])).round(4)
    array([-0.6931, -2.1269], dtype=float32)
    >>> keras.ops.convert_to_numpy(coin.mean()).round(4)
    array([0.5   , 0.8808], dtype=float32)
    """

    def __init__(self, logits=None, dtype=None):
        if logits is None:
            raise ValueError(
                "Argument `logits` is required: this Bernoulli takes logits "
                "only (probabilities near 0 and 1 are imprecise as floats). "
                "Received: logits=None."
            )
        self.logits = _float_tensor(logits)
        self.dtype = self.logits.dtype if dtype is None else dtype

    def log_prob(self, x):
        """The log-probability of `x`.

        For `x` in {0, 1} the log-probability of the outcome; for `x` in
        [0, 1] the continuous cross-entropy TFP gives too:
        `x * log(p) + (1 - x) * log(1 - p)`, computed as
        `-(max(l, 0) - l * x + log(1 + exp(-|l|)))` with `l` the logits,
        which neither overflows nor takes the log of 0.

        Args:
            x: Tensor or number, broadcastable with `logits`.

        Returns:
            A tensor in the dtype of `logits`.
        """
        logits = self.logits
        x = ops.cast(x, logits.dtype)
        return -(
            ops.relu(logits)
            - logits * x
            + ops.log1p(ops.exp(-ops.abs(logits)))
        )

    def mean(self):
        """The probabilities `sigmoid(logits)`, in `dtype`.

        Returns:
            A tensor shaped like `logits`.
        """
        return ops.cast(ops.sigmoid(self.logits), self.dtype)


def kl_divergence(p, q):
    """`KL(p || q)` of two `Normal`s, elementwise, in closed form.

    With `d = log(scale_p) - log(scale_q)`:
    `((loc_p - loc_q) / scale_q)^2 / 2 + (exp(2 d) - 1) / 2 - d`, with
    `expm1`, which keeps the KL of two nearly equal scales accurate.

    Args:
        p: A `Normal`.
        q: A `Normal`.

    Returns:
        A tensor of the broadcast shape of the parameters, in nats.

    Example:

    >>> from keras_mrnn import _distributions as d
    >>> kl = d.kl_divergence(d.Normal(1.0, 1.0), d.Normal(0.0, 1.0))
    >>> float(keras.ops.convert_to_numpy(kl))
    0.5
    """
    for name, value in (("p", p), ("q", q)):
        if not isinstance(value, Normal):
            raise ValueError(
                f"Argument `{name}` must be a Normal: kl_divergence is "
                f"implemented for two Normals only. Received: {name}="
                f"{type(value).__name__}."
            )
    log_ratio = ops.log(p.scale) - ops.log(q.scale)
    difference = (p.loc - ops.cast(q.loc, p.loc.dtype)) / q.scale
    return (
        0.5 * ops.square(difference)
        + 0.5 * ops.expm1(2.0 * log_ratio)
        - log_ratio
    )


def log_gamma(x):
    """`log Gamma(x)` for `x >= 1` in `keras.ops` (no backend-neutral op
    has it): the recurrence up to `x + 6`, then Stirling's series, accurate
    to ~1e-10 there."""
    shift = ops.log(x * (x + 1) * (x + 2) * (x + 3) * (x + 4) * (x + 5))
    z = x + 6.0
    inverse = 1.0 / z
    inverse2 = inverse * inverse
    series = inverse * (1.0 / 12 - inverse2 * (
        1.0 / 360 - inverse2 * (1.0 / 1260 - inverse2 / 1680)))
    return (z - 0.5) * ops.log(z) - z + _HALF_LOG_TWO_PI + series - shift


def student_t_log_prob(x, df, loc, scale):
    """The log density of the location-scale Student-t, elementwise, for
    `df >= 2` (the hmm switch keeps its degrees of freedom above 2)."""
    z = (x - loc) / scale
    return (log_gamma(0.5 * (df + 1.0)) - log_gamma(0.5 * df)
            - 0.5 * ops.log(df * math.pi) - ops.log(scale)
            - 0.5 * (df + 1.0) * ops.log1p(z * z / df))
