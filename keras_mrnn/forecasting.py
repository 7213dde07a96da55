"""Forecasts as distributions: a mixture predictive and the scores of it.

A regime-switching model's forecast of the next value is a mixture over the
regimes the next step may be in. This module holds that forecast as an
object and scores it against the values that came, for offline analysis in
NumPy and SciPy (it works on any Keras backend, and without one: convert
tensors with `keras.ops.convert_to_numpy` first). SciPy (a dependency of
the package) is imported on first use, which keeps `import keras_mrnn`
light.

- `PredictiveMixture(weights, loc, scale, df=None)`: a batch of univariate
  mixtures of Gaussian or Student-t components, with `log_prob`, `prob`,
  `cdf`, `mean`, `variance`, `quantile`, `sample` and `crps`, in the manner
  of TensorFlow Probability's distributions (a batch of independent
  distributions, one per forecast step).
- The scores of a sequence of forecasts against the realized values, each a
  float: `log_score` (mean log predictive density, nats per step, higher is
  better), `crps` (mean continuous ranked probability score, lower is
  better), `interval_coverage` (fraction of values inside the central
  interval, from the PIT), `rmse` (of the predictive mean), and `score` (the
  four in a dict).

References: T. Gneiting & A. E. Raftery (2007), "Strictly proper scoring
rules, prediction, and estimation", JASA 102(477); E. P. Grimit, T.
Gneiting, V. J. Berrocal & N. A. Johnson (2006), "The continuous ranked
probability score for circular variables and its application to mesoscale
forecast ensemble verification", QJRMS 132 (the Gaussian mixture's CRPS);
A. Jordan, F. Krueger & S. Lerch (2019), "Evaluating probabilistic
forecasts with scoringRules", J. Stat. Softw. 90(12) (the Student-t's).
"""

import numbers

import numpy as np

__all__ = [
    "PredictiveMixture",
    "crps",
    "interval_coverage",
    "log_score",
    "rmse",
    "score",
]

# How far the weights may sum from 1 (they are then renormalized exactly).
WEIGHT_TOLERANCE = 1e-6

# The Student-t mixture's CRPS is integrated numerically: Gauss-Legendre
# rules on the pieces between the realized value and each component's
# location +- these multiples of its scale, and on the two tails beyond
# them (see _crps_numeric_finite).
_CRPS_OFFSETS = np.array([-60.0, -20.0, -6.0, -2.0, -0.5,
                          0.5, 2.0, 6.0, 20.0, 60.0])
_CRPS_PIECE_NODES = 16
_CRPS_TAIL_NODES = 48
_CRPS_MAX_ALPHA = 40.0

# Bisection of the quantile: stops when the bracket is narrower than
# _QUANTILE_ATOL + _QUANTILE_RTOL * |x| (or cannot shrink in float64).
_QUANTILE_ATOL = 1e-10
_QUANTILE_RTOL = 1e-13
# (2200 bisections exhaust any float64 bracket.)
_QUANTILE_MAX_ITERATIONS = 2200


def _scipy():
    # SciPy is imported on first use: `import keras_mrnn` does not need it.
    try:
        from scipy import special
        from scipy import stats
    except ImportError as error:
        raise ImportError(
            "keras_mrnn.forecasting needs SciPy (a dependency of "
            "keras-mrnn): pip install scipy."
        ) from error
    return special, stats


def _as_float_array(name, value):
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(
            f"Argument `{name}` must be a number or an array of numbers. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"Argument `{name}` must be a number or an array of numbers. "
            f"Received: {name}={value!r} of type {type(value).__name__} "
            f"({error})."
        ) from None
    return array


def _short(value):
    text = np.array2string(np.asarray(value), threshold=8, edgeitems=2,
                           precision=6)
    return text.replace("\n", "")


class PredictiveMixture:
    """A batch of univariate mixture forecasts (Gaussian or Student-t).

    Each member of the batch is the distribution of one value,

        p(y) = sum_k weights[..., k] * f_k((y - loc[..., k]) / scale[..., k])
               / scale[..., k],

    where `f_k` is the standard normal density (`df=None`) or the standard
    Student-t density of `df[..., k]` degrees of freedom (a location-scale
    t: its variance is `scale**2 * df / (df - 2)` for `df > 2`). One
    component (`K = 1`) is a single Gaussian or t. A regime-switching
    model's one-step forecast is such a mixture over the regimes, weighted
    by the predicted regime probabilities; a batch of shape `(T,)` holds the
    forecasts of `T` steps, one per step, and the score functions of this
    module take it with the `T` realized values.

    The arguments broadcast together to `batch_shape + (K,)`; the last axis
    indexes the components. All computations are NumPy/SciPy in float64.

    Args:
        weights: Array-like `(..., K)`: the component probabilities,
            non-negative and summing to 1 over the last axis (within
            `1e-6`; they are then renormalized exactly).
        loc: Array-like `(..., K)`: the component locations (the means of
            Gaussian components, and of t components with `df > 1`).
        scale: Array-like `(..., K)`: the component scales, positive (the
            standard deviations of Gaussian components).
        df: `None` for Gaussian components, else the degrees of freedom of
            Student-t components: a positive number or an array-like
            `(..., K)` of positive numbers (`np.inf` gives a Gaussian
            component).

    Raises:
        TypeError: If an argument is not numeric.
        ValueError: If the shapes do not broadcast, an argument is not
            finite, `scale <= 0`, `weights < 0`, the weights do not sum to
            1, or `df <= 0`.

    Example:

    >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
    ...     weights=[0.7, 0.3], loc=[0.0, 2.0], scale=[1.0, 0.5])
    >>> forecast
    PredictiveMixture(batch_shape=(), num_components=2, components='gaussian')
    >>> round(float(forecast.mean()), 6), round(float(forecast.variance()), 6)
    (0.6, 1.615)
    >>> round(float(forecast.cdf(0.0)), 6)
    0.35001
    """

    def __init__(self, weights, loc, scale, df=None):
        weights = _as_float_array("weights", weights)
        loc = _as_float_array("loc", loc)
        scale = _as_float_array("scale", scale)
        arrays = {"weights": weights, "loc": loc, "scale": scale}
        if df is not None:
            if isinstance(df, bool):
                raise TypeError(
                    f"Argument `df` must be None, a positive number or an "
                    f"array of positive numbers. Received: df={df!r} of "
                    f"type {type(df).__name__}."
                )
            df = _as_float_array("df", df)
            arrays["df"] = df
        try:
            shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
        except ValueError:
            shapes = ", ".join(f"{name}={a.shape}" for name, a in
                               arrays.items())
            raise ValueError(
                f"Arguments `weights`, `loc`, `scale` (and `df`) must "
                f"broadcast to one shape (..., K). Received shapes: "
                f"{shapes}."
            ) from None
        if len(shape) == 0:
            shape = (1,)
        for name, array in arrays.items():
            if name == "df":
                bad = np.isnan(array)
            else:
                bad = ~np.isfinite(array)
            if bad.any():
                raise ValueError(
                    f"Argument `{name}` must be finite. Received: "
                    f"{name}={_short(array)}."
                )
        if (scale <= 0).any():
            raise ValueError(
                f"Argument `scale` must be positive. Received: "
                f"scale={_short(scale)}."
            )
        if df is not None and (df <= 0).any():
            raise ValueError(
                f"Argument `df` must be positive (np.inf for a Gaussian "
                f"component). Received: df={_short(df)}."
            )
        if (weights < 0).any():
            raise ValueError(
                f"Argument `weights` must be non-negative. Received: "
                f"weights={_short(weights)}."
            )
        weights = np.broadcast_to(weights, shape)
        total = weights.sum(axis=-1, keepdims=True)
        if (np.abs(total - 1.0) > WEIGHT_TOLERANCE).any():
            raise ValueError(
                f"Argument `weights` must sum to 1 over its last axis (the "
                f"components), within {WEIGHT_TOLERANCE:g}. Received: "
                f"weights={_short(weights)} with sums "
                f"{_short(total[..., 0])}."
            )
        self._weights = self._freeze(weights / total)
        self._loc = self._freeze(np.broadcast_to(loc, shape))
        self._scale = self._freeze(np.broadcast_to(scale, shape))
        if df is None:
            self._df = None
        else:
            df = np.broadcast_to(df, shape)
            if np.isinf(df).all():
                self._df = None
            else:
                self._df = self._freeze(df)

    @staticmethod
    def _freeze(array):
        array = np.array(array, dtype=np.float64)
        array.flags.writeable = False
        return array

    # ------------------------------------------------------------ properties
    @property
    def weights(self):
        """The component weights, float64 `batch_shape + (K,)`."""
        return self._weights

    @property
    def loc(self):
        """The component locations, float64 `batch_shape + (K,)`."""
        return self._loc

    @property
    def scale(self):
        """The component scales, float64 `batch_shape + (K,)`."""
        return self._scale

    @property
    def df(self):
        """`None` (Gaussian components), else the degrees of freedom,
        float64 `batch_shape + (K,)` (`inf` for Gaussian components)."""
        return self._df

    @property
    def batch_shape(self):
        """The shape of the batch of distributions (a tuple)."""
        return self._weights.shape[:-1]

    @property
    def num_components(self):
        """`K`, the number of mixture components."""
        return self._weights.shape[-1]

    @property
    def components(self):
        """`"gaussian"` or `"student_t"`."""
        return "gaussian" if self._df is None else "student_t"

    def __repr__(self):
        return (
            f"PredictiveMixture(batch_shape={self.batch_shape}, "
            f"num_components={self.num_components}, "
            f"components={self.components!r})"
        )

    def __len__(self):
        if not self.batch_shape:
            raise TypeError("len() of a PredictiveMixture with batch_shape "
                            "() (a single distribution).")
        return self.batch_shape[0]

    def __getitem__(self, index):
        """Indexes the batch: `forecast[t]` is step `t`'s distribution."""
        if not isinstance(index, tuple):
            index = (index,)
        if not self.batch_shape:
            raise IndexError("A PredictiveMixture with batch_shape () (a "
                             "single distribution) cannot be indexed.")
        index = index + (slice(None),)
        df = None if self._df is None else self._df[index]
        return PredictiveMixture(self._weights[index], self._loc[index],
                                 self._scale[index], df)

    # --------------------------------------------------------- components
    def _standardized(self, y):
        y = _as_float_array("y", y)
        try:
            np.broadcast_shapes(y.shape, self.batch_shape)
        except ValueError:
            raise ValueError(
                f"Argument `y` of shape {y.shape} does not broadcast "
                f"against the batch_shape {self.batch_shape}."
            ) from None
        return (y[..., None] - self._loc) / self._scale

    def _component_logpdf(self, z):
        _, stats = _scipy()
        if self._df is None:
            return stats.norm.logpdf(z) - np.log(self._scale)
        return stats.t.logpdf(z, self._df) - np.log(self._scale)

    def _component_cdf(self, z):
        special, stats = _scipy()
        if self._df is None:
            return special.ndtr(z)
        return stats.t.cdf(z, self._df)

    def _component_sf(self, z):
        special, stats = _scipy()
        if self._df is None:
            return special.ndtr(-z)
        return stats.t.sf(z, self._df)

    # ------------------------------------------------------------ methods
    def log_prob(self, y):
        """The log density at `y`.

        Args:
            y: Array-like that broadcasts against `batch_shape`.

        Returns:
            float64 array of the broadcast shape of `y` and `batch_shape`
            (a 0-d array for a scalar).

        Example:

        >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
        ...     weights=[1.0], loc=[0.0], scale=[1.0])
        >>> round(float(forecast.log_prob(0.0)), 6)  # -log(2 pi) / 2
        -0.918939
        """
        special, _ = _scipy()
        z = self._standardized(y)
        with np.errstate(divide="ignore"):
            log_weights = np.log(self._weights)
        return special.logsumexp(log_weights + self._component_logpdf(z),
                                 axis=-1)

    def prob(self, y):
        """The density at `y`: `exp(log_prob(y))`.

        Args:
            y: Array-like that broadcasts against `batch_shape`.

        Returns:
            float64 array of the broadcast shape of `y` and `batch_shape`.

        Example:

        >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
        ...     weights=[0.5, 0.5], loc=[-1.0, 1.0], scale=[1.0, 1.0])
        >>> round(float(forecast.prob(1.0)), 6)
        0.226467
        """
        return np.exp(self.log_prob(y))

    def cdf(self, y):
        """The cumulative distribution function `P(Y <= y)`.

        Args:
            y: Array-like that broadcasts against `batch_shape`.

        Returns:
            float64 array of the broadcast shape of `y` and `batch_shape`.

        Example:

        >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
        ...     weights=[[0.5, 0.5]], loc=[[-1.0, 1.0]], scale=[[1.0, 1.0]])
        >>> np.round(forecast.cdf([-1.0, 0.0, 1.0]), 6).tolist()
        [0.261375, 0.5, 0.738625]
        """
        z = self._standardized(y)
        return np.sum(self._weights * self._component_cdf(z), axis=-1)

    def _component_means(self):
        if self._df is None:
            return self._loc
        return np.where(self._df > 1, self._loc, np.nan)

    def _component_variances(self):
        if self._df is None:
            return self._scale ** 2
        df = self._df
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(np.isinf(df), 1.0, df / (df - 2.0))
        factor = np.where(df > 2, factor, np.where(df > 1, np.inf, np.nan))
        return self._scale ** 2 * factor

    def mean(self):
        """The mean, `sum_k weights_k * loc_k`.

        NaN where a component of positive weight has `df <= 1` (no mean).

        Returns:
            float64 array of shape `batch_shape`.

        Example:

        >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
        ...     weights=[0.25, 0.75], loc=[-2.0, 2.0], scale=[1.0, 1.0],
        ...     df=4.0)
        >>> float(forecast.mean())
        1.0
        """
        means = self._component_means()
        terms = np.where(self._weights > 0, self._weights * means, 0.0)
        return terms.sum(axis=-1)

    def variance(self):
        """The variance, `sum_k weights_k (var_k + (loc_k - mean)^2)`.

        `inf` where a component of positive weight has `1 < df <= 2`, NaN
        where one has `df <= 1`.

        Returns:
            float64 array of shape `batch_shape`.

        Example:

        >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
        ...     weights=[1.0], loc=[0.0], scale=[1.0], df=4.0)
        >>> float(forecast.variance())  # df / (df - 2)
        2.0
        """
        mean = self.mean()
        with np.errstate(invalid="ignore"):
            terms = self._component_variances() + (
                self._component_means() - mean[..., None]) ** 2
            terms = np.where(self._weights > 0, self._weights * terms, 0.0)
        return terms.sum(axis=-1)

    def _component_ppf(self, q):
        special, stats = _scipy()
        if self._df is None:
            return self._loc + self._scale * special.ndtri(q)
        return self._loc + self._scale * stats.t.ppf(q, self._df)

    def quantile(self, q):
        """The quantile function: the `y` with `cdf(y) = q`.

        Found by bisection of the mixture's CDF between the smallest and the
        largest quantile of its components (the mixture's lies between
        them), vectorized over `q` and the batch, to an absolute accuracy
        of `1e-10` (relative `1e-13` for large values): well within `1e-8`.

        Args:
            q: A probability or a 1-D array-like of probabilities, in
                `[0, 1]` (`0` gives `-inf`, `1` gives `inf`).

        Returns:
            float64 array of shape `q.shape + batch_shape`.

        Raises:
            ValueError: If `q` is not 0-D or 1-D, or outside `[0, 1]`.

        Example:

        >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
        ...     weights=[[0.7, 0.3]], loc=[[0.0, 2.0]], scale=[[1.0, 0.5]])
        >>> np.round(forecast.quantile([0.1, 0.5, 0.9]), 6).tolist()
        [[-1.067571], [0.563389], [2.254804]]
        """
        q = _as_float_array("q", q)
        if q.ndim > 1:
            raise ValueError(
                f"Argument `q` must be a number or a 1-D array. Received: "
                f"q of shape {q.shape}."
            )
        if not ((q >= 0) & (q <= 1)).all():
            raise ValueError(
                f"Argument `q` must be in [0, 1]. Received: q={_short(q)}."
            )
        extra = (1,) * len(self.batch_shape)
        qb = np.broadcast_to(q.reshape(q.shape + extra),
                             q.shape + self.batch_shape)
        inner = np.where((qb > 0) & (qb < 1), qb, 0.5)
        with np.errstate(invalid="ignore", over="ignore"):
            bounds = self._component_ppf(inner[..., None])
        positive = self._weights > 0
        lo = np.min(np.where(positive, bounds, np.inf), axis=-1)
        hi = np.max(np.where(positive, bounds, -np.inf), axis=-1)
        # The exact bracket, widened by a hair against the rounding of the
        # components' ppf; where SciPy's ppf fails (t far in a tail), widen
        # it by doubling steps until it holds.
        lo = np.where(np.isfinite(lo), lo, -1.0)
        hi = np.where(np.isfinite(hi), hi, 1.0)
        pad = 1e-12 * (1 + np.abs(lo) + np.abs(hi))
        lo, hi = lo - pad, hi + pad
        for bound, sign in ((lo, -1.0), (hi, 1.0)):
            step = np.maximum(hi - lo, 1.0)
            with np.errstate(over="ignore", invalid="ignore"):
                for _ in range(_QUANTILE_MAX_ITERATIONS):
                    cdf = self.cdf(bound)
                    bad = cdf > inner if sign < 0 else cdf < inner
                    if not bad.any():
                        break
                    bound[...] = np.where(bad, bound + sign * step, bound)
                    step = np.where(bad, 2 * step, step)
        for _ in range(_QUANTILE_MAX_ITERATIONS):
            with np.errstate(over="ignore", invalid="ignore"):
                mid = 0.5 * lo + 0.5 * hi
            active = (hi - lo > _QUANTILE_ATOL + _QUANTILE_RTOL * np.abs(mid)
                      ) & (mid > lo) & (mid < hi)
            if not active.any():
                break
            below = self.cdf(mid) < inner
            lo = np.where(active & below, mid, lo)
            hi = np.where(active & ~below, mid, hi)
        result = 0.5 * lo + 0.5 * hi
        result = np.where(qb <= 0, -np.inf, result)
        return np.where(qb >= 1, np.inf, result)

    def sample(self, num_samples, seed=None):
        """Draws independent samples from each distribution of the batch.

        Each draw picks a component by its weight, then a value from it
        (NumPy's `default_rng(seed)`: a seed repeats the draws).

        Args:
            num_samples: Positive int, the number of draws.
            seed: `None` (fresh entropy), a non-negative int, or a
                `numpy.random.Generator`.

        Returns:
            float64 array of shape `(num_samples,) + batch_shape`.

        Raises:
            TypeError: If `num_samples` is not an int or `seed` is not an
                int, a Generator or None.
            ValueError: If `num_samples < 1` or `seed < 0`.

        Example:

        >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
        ...     weights=[[0.5, 0.5]] * 3, loc=[[-1.0, 1.0]] * 3,
        ...     scale=[[1.0, 1.0]] * 3)
        >>> draws = forecast.sample(1000, seed=0)
        >>> draws.shape, bool((draws == forecast.sample(1000, seed=0)).all())
        ((1000, 3), True)
        """
        if isinstance(num_samples, bool) or not isinstance(
            num_samples, numbers.Integral
        ):
            raise TypeError(
                f"Argument `num_samples` must be a positive integer. "
                f"Received: num_samples={num_samples!r} of type "
                f"{type(num_samples).__name__}."
            )
        if num_samples < 1:
            raise ValueError(
                f"Argument `num_samples` must be a positive integer. "
                f"Received: num_samples={num_samples!r}."
            )
        if isinstance(seed, np.random.Generator):
            rng = seed
        else:
            if seed is not None and (isinstance(seed, bool) or not
                                     isinstance(seed, numbers.Integral)):
                raise TypeError(
                    f"Argument `seed` must be None, a non-negative integer "
                    f"or a numpy.random.Generator. Received: seed={seed!r} "
                    f"of type {type(seed).__name__}."
                )
            if seed is not None and seed < 0:
                raise ValueError(
                    f"Argument `seed` must be a non-negative integer. "
                    f"Received: seed={seed!r}."
                )
            rng = np.random.default_rng(seed)
        shape = (int(num_samples),) + self.batch_shape
        cumulative = np.cumsum(self._weights, axis=-1)
        u = rng.uniform(size=shape)
        index = np.sum(u[..., None] >= cumulative[..., :-1], axis=-1)
        # Components of zero weight are never chosen (u < 1 = the last
        # cumulative weight; equal cumulative sums skip them).
        index = np.minimum(index, self.num_components - 1)[..., None]
        loc = np.take_along_axis(
            np.broadcast_to(self._loc, shape + (self.num_components,)),
            index, axis=-1)[..., 0]
        scale = np.take_along_axis(
            np.broadcast_to(self._scale, shape + (self.num_components,)),
            index, axis=-1)[..., 0]
        if self._df is None:
            noise = rng.standard_normal(size=shape)
        else:
            df = np.take_along_axis(
                np.broadcast_to(self._df, shape + (self.num_components,)),
                index, axis=-1)[..., 0]
            gaussian = np.isinf(df)
            noise = rng.standard_t(np.where(gaussian, 1.0, df), size=shape)
            normal = rng.standard_normal(size=shape)
            noise = np.where(gaussian, normal, noise)
        return loc + scale * noise

    def crps(self, y):
        """The continuous ranked probability score at `y` (lower is better).

        `CRPS(F, y) = integral (F(x) - 1{x >= y})^2 dx
        = E|Y - y| - E|Y - Y'| / 2`, in the units of `y`. Closed forms for
        Gaussian mixtures (Grimit, Gneiting, Berrocal & Johnson 2006:
        `sum_i w_i A(y - mu_i, s_i^2) - 1/2 sum_ij w_i w_j A(mu_i - mu_j,
        s_i^2 + s_j^2)` with `A(m, v) = 2 sqrt(v) phi(m / sqrt(v)) + m
        (2 Phi(m / sqrt(v)) - 1)`) and for a single Student-t with `df > 1`
        (Jordan, Krueger & Lerch 2019, scoringRules' `crps_t`); Student-t
        mixtures (and a single t with `df <= 1`) integrate the definition
        numerically (piecewise Gauss-Legendre, about `1e-8` relative on
        usual cases, `1e-6` in heavy tails). `inf` where the CRPS diverges
        (a component of positive weight with `df <= 1/2`).

        Args:
            y: Array-like that broadcasts against `batch_shape`.

        Returns:
            float64 array of the broadcast shape of `y` and `batch_shape`.

        Example:

        >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
        ...     weights=[1.0], loc=[0.0], scale=[1.0])
        >>> round(float(forecast.crps(0.0)), 6)  # (sqrt(2) - 1) / sqrt(pi)
        0.233695
        """
        y = _as_float_array("y", y)
        z = self._standardized(y)
        shape = z.shape
        y = np.broadcast_to(y, shape[:-1])
        weights = np.broadcast_to(self._weights, shape)
        loc = np.broadcast_to(self._loc, shape)
        scale = np.broadcast_to(self._scale, shape)
        if self._df is None:
            return _crps_gaussian_mixture(y, weights, loc, scale)
        df = np.broadcast_to(self._df, shape)
        if self.num_components == 1:
            gaussian = np.isinf(df[..., 0])
            closed = df[..., 0] > 1
            result = np.where(
                gaussian,
                _crps_gaussian_mixture(y, weights, loc, scale),
                _crps_t(z[..., 0], np.where(closed & ~gaussian, df[..., 0],
                                            2.0), scale[..., 0]))
            if closed.all():
                return result
            numeric = _crps_numeric(y, weights, loc, scale, df)
            return np.where(closed, result, numeric)
        return _crps_numeric(y, weights, loc, scale, df)


# --------------------------------------------------------------- CRPS maths
def _crps_a(m, v):
    special, stats = _scipy()
    s = np.sqrt(v)
    u = m / s
    return 2 * s * stats.norm.pdf(u) + m * (2 * special.ndtr(u) - 1)


def _crps_gaussian_mixture(y, weights, loc, scale):
    first = np.sum(weights * _crps_a(y[..., None] - loc, scale ** 2), axis=-1)
    dm = loc[..., :, None] - loc[..., None, :]
    dv = scale[..., :, None] ** 2 + scale[..., None, :] ** 2
    ww = weights[..., :, None] * weights[..., None, :]
    second = np.sum(ww * _crps_a(dm, dv), axis=(-2, -1))
    return first - 0.5 * second


def _crps_t(z, df, scale):
    special, stats = _scipy()
    # scoringRules' crps_t (Jordan, Krueger & Lerch 2019), df > 1.
    log_ratio = (special.betaln(0.5, df - 0.5)
                 - 2 * special.betaln(0.5, df / 2))
    constant = 2 * np.sqrt(df) * np.exp(log_ratio) / (df - 1)
    value = (z * (2 * stats.t.cdf(z, df) - 1)
             + 2 * stats.t.pdf(z, df) * (df + z ** 2) / (df - 1)
             - constant)
    return scale * value


def _mixture_cdf_sf(x, weights, loc, scale, df):
    _, stats = _scipy()
    # x: (N, M); components (N, K): F and 1 - F of the mixture at x, each
    # summed from the components' own cdf / sf (no cancellation in tails).
    z = (x[..., None] - loc[:, None, :]) / scale[:, None, :]
    d = df[:, None, :]
    w = weights[:, None, :]
    return (np.sum(w * stats.t.cdf(z, d), axis=-1),
            np.sum(w * stats.t.sf(z, d), axis=-1))


def _crps_numeric(y, weights, loc, scale, df):
    shape = y.shape
    k = weights.shape[-1]
    y = y.reshape(-1)
    weights = weights.reshape(-1, k)
    loc = loc.reshape(-1, k)
    scale = scale.reshape(-1, k)
    df = df.reshape(-1, k)
    positive = weights > 0
    result = np.empty(y.shape)
    diverges = np.any(positive & (df <= 0.5), axis=-1)
    result[diverges] = np.inf
    ok = ~diverges
    if ok.any():
        result[ok] = _crps_numeric_finite(y[ok], weights[ok], loc[ok],
                                          scale[ok], df[ok])
    return result.reshape(shape)


def _crps_numeric_finite(y, weights, loc, scale, df):
    n = y.shape[0]
    # Breakpoints: y and each component's location +- multiples of its
    # scale (zero-weight components only add harmless pieces).
    points = (loc[:, :, None] + scale[:, :, None] * _CRPS_OFFSETS).reshape(
        n, -1)
    points = np.sort(np.concatenate([y[:, None], points], axis=1), axis=1)
    nodes, node_weights = np.polynomial.legendre.leggauss(_CRPS_PIECE_NODES)
    a, b = points[:, :-1], points[:, 1:]
    half = 0.5 * (b - a)
    x = (0.5 * (a + b))[..., None] + half[..., None] * nodes
    x = x.reshape(n, -1)
    cdf, sf = _mixture_cdf_sf(x, weights, loc, scale, df)
    integrand = np.where(x < y[:, None], cdf ** 2, sf ** 2)
    integrand = integrand.reshape(n, -1, _CRPS_PIECE_NODES)
    total = np.sum(half * np.sum(integrand * node_weights, axis=-1), axis=1)
    # Tails: a piece of length s beyond the outer breakpoints, then
    # x = b -+ s u^(-alpha) for u in (0, 1] (dx = alpha s u^(-alpha-1) du).
    # A t tail's integrand decays as |x|^(-2 df), so the u-integrand goes as
    # u^(alpha (2 df - 1) - 1): alpha = max(1, 2 / (2 df - 1)) keeps it
    # smooth (at least linear in u) for the heaviest tail present.
    u_nodes, u_weights = np.polynomial.legendre.leggauss(_CRPS_TAIL_NODES)
    u = 0.5 * (u_nodes + 1)
    u_weights = 0.5 * u_weights
    s = (np.max(scale, axis=1) * np.abs(_CRPS_OFFSETS).max())[:, None]
    heaviest = np.min(np.where(weights > 0, df, np.inf), axis=1)
    with np.errstate(divide="ignore"):
        alpha = np.maximum(1.0, 2.0 / (2.0 * heaviest - 1.0))
    alpha = np.minimum(alpha, _CRPS_MAX_ALPHA)[:, None]
    stretch = u ** -alpha
    jacobian = alpha * s * stretch / u
    for side in (-1.0, 1.0):
        b = points[:, :1] if side < 0 else points[:, -1:]
        near = b + side * s * 0.5 * (nodes + 1)
        far = b + side * s * stretch
        cdf, sf = _mixture_cdf_sf(np.concatenate([near, far], axis=1),
                                  weights, loc, scale, df)
        values = cdf ** 2 if side < 0 else sf ** 2
        total += 0.5 * s[:, 0] * np.sum(
            values[:, :_CRPS_PIECE_NODES] * node_weights, axis=1)
        total += np.sum(values[:, _CRPS_PIECE_NODES:] * jacobian * u_weights,
                        axis=1)
    return total


# ------------------------------------------------------------------ scores
def _per_step(forecast, y, name, function):
    """Evaluates `function(distribution, values)` step by step and returns
    the flat float64 array of per-step values."""
    if isinstance(forecast, PredictiveMixture):
        y = _as_float_array("y", y)
        if y.shape != forecast.batch_shape:
            raise ValueError(
                f"Argument `y` must have the shape of the forecast's "
                f"batch_shape {forecast.batch_shape} (one realized value "
                f"per forecast). Received: y of shape {y.shape}."
            )
        if y.size == 0:
            raise ValueError(f"{name}: no forecasts to score (empty `y`).")
        return np.asarray(function(forecast, y), np.float64).reshape(-1)
    if isinstance(forecast, (list, tuple)):
        if not all(isinstance(f, PredictiveMixture) for f in forecast):
            kinds = sorted({type(f).__name__ for f in forecast})
            raise TypeError(
                f"Argument `forecast` must be a PredictiveMixture or a "
                f"list of them. Received a list of {kinds}."
            )
        y = _as_float_array("y", y)
        if y.ndim == 0 or len(y) != len(forecast):
            raise ValueError(
                f"Argument `y` must hold one value (or array) per forecast "
                f"of the list: {len(forecast)}. Received: y of shape "
                f"{y.shape}."
            )
        if len(forecast) == 0:
            raise ValueError(f"{name}: no forecasts to score (empty list).")
        return np.concatenate([
            _per_step(f, value, name, function) for f, value in
            zip(forecast, y)
        ])
    raise TypeError(
        f"Argument `forecast` must be a PredictiveMixture (a batch of "
        f"forecasts, one per step) or a list of them. Received: "
        f"{type(forecast).__name__}."
    )


def _level(level):
    if isinstance(level, bool) or not isinstance(level, numbers.Real):
        raise TypeError(
            f"Argument `level` must be a number in (0, 1). Received: "
            f"level={level!r} of type {type(level).__name__}."
        )
    if not 0 < level < 1:
        raise ValueError(
            f"Argument `level` must be in (0, 1). Received: level={level!r}."
        )
    return float(level)


def log_score(forecast, y):
    """The mean log predictive density of the realized values.

    `mean_t log p_t(y_t)`, in nats per step (higher is better): the proper
    score that training by likelihood optimizes.

    Args:
        forecast: A `PredictiveMixture` of `batch_shape` `y.shape` (one
            distribution per step), or a list of `PredictiveMixture`s, one
            per value of `y`.
        y: Array-like, the realized values.

    Returns:
        A float.

    Example:

    >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
    ...     weights=[[1.0], [1.0]], loc=[[0.0], [1.0]], scale=[[1.0], [1.0]])
    >>> round(keras_mrnn.forecasting.log_score(forecast, [0.0, 2.0]), 6)
    -1.168939
    """
    return float(np.mean(_per_step(forecast, y, "log_score",
                                   lambda f, v: f.log_prob(v))))


def crps(forecast, y):
    """The mean continuous ranked probability score (lower is better).

    `mean_t CRPS(F_t, y_t)`, in the units of `y` (see
    `PredictiveMixture.crps`).

    Args:
        forecast: A `PredictiveMixture` of `batch_shape` `y.shape`, or a
            list of them, one per value of `y`.
        y: Array-like, the realized values.

    Returns:
        A float.

    Example:

    >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
    ...     weights=[[1.0], [1.0]], loc=[[0.0], [0.0]], scale=[[1.0], [1.0]])
    >>> round(keras_mrnn.forecasting.crps(forecast, [0.0, 0.0]), 6)
    0.233695
    """
    return float(np.mean(_per_step(forecast, y, "crps",
                                   lambda f, v: f.crps(v))))


def interval_coverage(forecast, y, level=0.9):
    """The fraction of realized values inside the central interval.

    A value counts when its PIT, the forecast's CDF at it, lies in
    `[(1 - level) / 2, (1 + level) / 2]`: for a calibrated forecast the
    fraction is close to `level`.

    Args:
        forecast: A `PredictiveMixture` of `batch_shape` `y.shape`, or a
            list of them, one per value of `y`.
        y: Array-like, the realized values.
        level: The interval's probability, in `(0, 1)`.

    Returns:
        A float in `[0, 1]`.

    Example:

    >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
    ...     weights=[[1.0]] * 4, loc=[[0.0]] * 4, scale=[[1.0]] * 4)
    >>> keras_mrnn.forecasting.interval_coverage(
    ...     forecast, [0.0, 1.0, -1.5, 2.0], level=0.9)
    0.75
    """
    level = _level(level)
    pit = _per_step(forecast, y, "interval_coverage",
                    lambda f, v: f.cdf(v))
    inside = (pit >= (1 - level) / 2) & (pit <= (1 + level) / 2)
    return float(np.mean(inside))


def rmse(forecast, y):
    """The root mean squared error of the predictive mean.

    Args:
        forecast: A `PredictiveMixture` of `batch_shape` `y.shape`, or a
            list of them, one per value of `y`.
        y: Array-like, the realized values.

    Returns:
        A float.

    Example:

    >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
    ...     weights=[[1.0], [1.0]], loc=[[0.0], [1.0]], scale=[[1.0], [1.0]])
    >>> keras_mrnn.forecasting.rmse(forecast, [3.0, -3.0])
    3.5355339059327378
    """
    errors = _per_step(forecast, y, "rmse", lambda f, v: f.mean() - v)
    return float(np.sqrt(np.mean(errors ** 2)))


def score(forecast, y, level=0.9):
    """The four scores of a sequence of forecasts, in a dict.

    Args:
        forecast: A `PredictiveMixture` of `batch_shape` `y.shape`, or a
            list of them, one per value of `y`.
        y: Array-like, the realized values.
        level: The central interval's probability for `coverage`.

    Returns:
        `{"log_score": ..., "crps": ..., "coverage": ..., "rmse": ...}`,
        floats (see `log_score`, `crps`, `interval_coverage`, `rmse`).

    Example:

    >>> forecast = keras_mrnn.forecasting.PredictiveMixture(
    ...     weights=[[1.0]] * 2, loc=[[0.0]] * 2, scale=[[1.0]] * 2)
    >>> scores = keras_mrnn.forecasting.score(forecast, [0.0, 0.0])
    >>> {name: round(value, 4) for name, value in scores.items()}
    {'log_score': -0.9189, 'crps': 0.2337, 'coverage': 1.0, 'rmse': 0.0}
    """
    level = _level(level)
    return {
        "log_score": log_score(forecast, y),
        "crps": crps(forecast, y),
        "coverage": interval_coverage(forecast, y, level),
        "rmse": rmse(forecast, y),
    }
