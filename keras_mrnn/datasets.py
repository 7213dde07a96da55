"""Data sets of the examples: MNIST from a local file, two synthetic tasks.

- `load_mnist`: MNIST from a local `mnist.npz` (argument or the `MNIST_NPZ`
  environment variable), else `keras.datasets.mnist.load_data()`.
- `alien_signal`: the binary "alien signal" task of the Markov RNN reference
  code (a sine wave with or without a hidden high-frequency cosine).
- `stateful_cosine`: the damped cosine series of Keras's classic stateful
  LSTM example, with its "mean of the next `lahead` values" target.
- `load_gnp`: Hamilton's quarterly US real GNP growth, 1951Q2-1984Q4,
  shipped with the package, and the NBER recession quarters of the period.
- `MarkovSwitchingAR`: sequences that move between K regimes of a sticky
  Markov chain, with the Bayes filter and predictor of the true parameters
  (the ceiling for "which regime is it in"), and
  `normalized_mutual_information` to score regime labels against the truth.
"""

import math
import numbers
import os

import numpy as np

from keras_mrnn import _validation as check

MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")

# NBER's US business-cycle reference dates (nber.org/research/data/us-
# business-cycle-expansions-and-contractions) within 1951Q2-1984Q4, as
# recession quarters: from the quarter after each peak through the trough.
NBER_RECESSIONS = (
    ("1953Q3", "1954Q2"), ("1957Q4", "1958Q2"), ("1960Q3", "1961Q1"),
    ("1970Q1", "1970Q4"), ("1974Q1", "1975Q1"), ("1980Q2", "1980Q3"),
    ("1981Q4", "1982Q4"),
)


def _seed(seed):
    seed = check.optional_seed("seed", seed)
    if seed is not None and seed < 0:
        # NumPy's generators take non-negative seeds only.
        raise ValueError(
            f"Argument `seed` must be a non-negative integer or None. "
            f"Received: seed={seed!r}."
        )
    return seed


def load_mnist(path=None):
    """Loads MNIST as `((x_train, y_train), (x_test, y_test))`.

    The images are returned as `keras.datasets.mnist.load_data()` returns
    them: `uint8` arrays of shape `(n, 28, 28)` with values in `[0, 255]`
    and `uint8` labels of shape `(n,)`. Where the data come from:

    1. `path`, if given: a NumPy `.npz` with the keys `x_train`, `y_train`,
       `x_test` and `y_test` (the layout of Keras's own `mnist.npz`);
    2. else the file named by the `MNIST_NPZ` environment variable, if set;
    3. else `keras.datasets.mnist.load_data()`, which downloads the file
       once (and needs internet access then).

    Args:
        path: Optional path (`str` or `os.PathLike`) of a local `mnist.npz`.

    Returns:
        `((x_train, y_train), (x_test, y_test))` as NumPy arrays.

    Raises:
        TypeError: If `path` is not a string or path-like.
        FileNotFoundError: If the given (or `MNIST_NPZ`) file does not exist.
        ValueError: If the file is not a readable `.npz` with the four
            expected arrays of consistent shapes.

    Example:

    >>> path = "/path/to/mnist.npz"  # or None: $MNIST_NPZ, else a download
    >>> (x_train, y_train), (x_test, y_test) = keras_mrnn.datasets.load_mnist(
    ...     path)  # doctest: +SKIP
    >>> x_train.shape, x_test.shape  # doctest: +SKIP
    ((60000, 28, 28), (10000, 28, 28))
    """
    source = "argument `path`"
    if path is None and os.environ.get("MNIST_NPZ"):
        path = os.environ["MNIST_NPZ"]
        source = "environment variable MNIST_NPZ"
    if path is None:
        import keras

        return keras.datasets.mnist.load_data()
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"Argument `path` must be a string or os.PathLike. Received: "
            f"path={path!r} of type {type(path).__name__}."
        )
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"MNIST file not found: {path!r} (from the {source}). Give the "
            "path of a local mnist.npz (keys x_train, y_train, x_test, "
            "y_test), or leave both the argument and MNIST_NPZ unset to "
            "download it with keras.datasets.mnist.load_data()."
        )
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(
            f"Could not read MNIST file {path!r} as a NumPy .npz archive "
            f"({type(error).__name__}: {error}). Expected a .npz with the "
            f"keys {list(MNIST_KEYS)}."
        ) from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(
            f"MNIST file {path!r} is a single .npy array, not a .npz archive "
            f"with the keys {list(MNIST_KEYS)}."
        )
    with data:
        missing = [key for key in MNIST_KEYS if key not in data.files]
        if missing:
            raise ValueError(
                f"MNIST file {path!r} lacks the arrays {missing}; it holds "
                f"{sorted(data.files)}. Expected the keys {list(MNIST_KEYS)}."
            )
        arrays = {key: data[key] for key in MNIST_KEYS}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or (
            images.shape[0] != labels.shape[0]
        ):
            raise ValueError(
                f"MNIST file {path!r} has inconsistent {split} arrays: "
                f"x_{split} of shape {images.shape} and y_{split} of shape "
                f"{labels.shape}; expected (n, 28, 28) and (n,)."
            )
    return (
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
    )


def alien_signal(
    num_samples,
    num_steps=50,
    seed=None,
    frequency_range=(100, 200),
    span=20.0,
):
    """Generates the binary "alien signal" task of the Markov RNN reference.

    Each sequence samples a sine wave on a window of length `span`,
    `t = linspace(p * pi, p * pi + span, num_steps)` with a random phase
    `p ~ U(-1, 1)`. Label-1 sequences ("alien") carry a hidden second wave:

        signal = sin(t) + y * cos(f * t + s)

    with `y ~ Bernoulli(0.5)`, an integer frequency `f` drawn uniformly in
    `[frequency_range[0], frequency_range[1])` and a shift `s ~ U(0, 5)`,
    all drawn per sequence. The same seed gives the same data.

    Args:
        num_samples: Positive integer, number of sequences.
        num_steps: Positive integer, length `T` of each sequence (50).
        seed: Optional non-negative integer seed of the generator.
        frequency_range: Pair of integers `(low, high)`, `low < high`, the
            range of the hidden frequency `f` (reference: `(100, 200)`).
        span: Positive float, the length of the time window (20).

    Returns:
        A tuple `(x, y)`: `x` float32 of shape `(num_samples, num_steps, 1)`
        and `y` int32 labels of shape `(num_samples,)` in `{0, 1}`.

    Example:

    >>> x, y = keras_mrnn.datasets.alien_signal(1000, seed=0)
    >>> x.shape, y.shape
    ((1000, 50, 1), (1000,))
    """
    num_samples = check.positive_int("num_samples", num_samples)
    num_steps = check.positive_int("num_steps", num_steps)
    seed = _seed(seed)
    span = check.positive_float("span", span)
    if (
        not isinstance(frequency_range, (tuple, list))
        or len(frequency_range) != 2
        or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool)
            for v in frequency_range
        )
        or not 0 < frequency_range[0] < frequency_range[1]
    ):
        raise ValueError(
            "Argument `frequency_range` must be a pair of integers "
            "(low, high) with 0 < low < high. Received: "
            f"frequency_range={frequency_range!r}."
        )
    rng = np.random.default_rng(seed)
    phase = rng.uniform(-1.0, 1.0, size=(num_samples, 1))
    labels = rng.integers(0, 2, size=num_samples)
    frequency = rng.integers(
        frequency_range[0], frequency_range[1], size=(num_samples, 1)
    )
    shift = rng.uniform(0.0, 5.0, size=(num_samples, 1))
    grid = np.linspace(0.0, span, num_steps)[None, :]
    t = phase * math.pi + grid
    signal = np.sin(t) + labels[:, None] * np.cos(frequency * t + shift)
    return signal[..., None].astype("float32"), labels.astype("int32")


def stateful_cosine(
    num_points=50000,
    lahead=1,
    amplitude=100.0,
    period=25.0,
    decay=1e-4,
):
    """The damped cosine series of Keras's classic stateful LSTM example.

    `cos[i] = amplitude * cos(i / (2 * pi * period)) * exp(-decay * i)`;
    the target of point `i` is the mean of the next `lahead` points,
    `mean(cos[i + 1 : i + 1 + lahead])` (the series is computed `lahead`
    points further so that every target exists).

    Args:
        num_points: Positive integer, number of points (50,000).
        lahead: Positive integer, how many future points the target
            averages (1: predict the next point).
        amplitude: Positive float (100).
        period: Positive float (25).
        decay: Non-negative float, the exponential damping rate (1e-4).

    Returns:
        A tuple `(x, y)`: `x` float32 of shape `(num_points, 1, 1)` (one time
        step of one feature per sample, as the stateful example feeds it) and
        `y` float32 of shape `(num_points, 1)`.

    Example:

    >>> x, y = keras_mrnn.datasets.stateful_cosine(1000)
    >>> x.shape, y.shape
    ((1000, 1, 1), (1000, 1))
    >>> bool(np.allclose(y[:-1, 0], x[1:, 0, 0]))
    True
    """
    num_points = check.positive_int("num_points", num_points)
    lahead = check.positive_int("lahead", lahead)
    amplitude = check.positive_float("amplitude", amplitude)
    period = check.positive_float("period", period)
    decay = check.non_negative_float("decay", decay)
    index = np.arange(num_points + lahead, dtype="float64")
    series = (
        amplitude
        * np.cos(index / (2.0 * math.pi * period))
        * np.exp(-decay * index)
    )
    window = np.cumsum(np.concatenate([[0.0], series]))
    # mean(series[i + 1 : i + 1 + lahead]) for i in [0, num_points).
    target = (window[1 + lahead:] - window[1:-lahead or None])[:num_points]
    target = target / lahead
    x = series[:num_points].reshape(num_points, 1, 1)
    y = target.reshape(num_points, 1)
    return x.astype("float32"), y.astype("float32")


def load_gnp():
    """Hamilton's US real GNP growth and the NBER recessions, 1951Q2-1984Q4.

    The quarterly growth of US real GNP in percent (100 times the change of
    its log), the series of Hamilton (1989), "A New Approach to the Economic
    Analysis of Nonstationary Time Series and the Business Cycle"
    (Econometrica 57(2)), 135 quarters, shipped with the package
    (`keras_mrnn/data/gnp.csv`, from statsmodels' test data), and for each
    quarter whether it falls in an NBER recession (`NBER_RECESSIONS`: from
    the quarter after a business-cycle peak through the trough; 26
    quarters).

    Returns:
        `(growth, quarters, recession)`: float64 `(135,)`, the labels
        `"1951Q2"`, ..., `"1984Q4"` as a list of strings, and bool `(135,)`.

    Example:

    >>> growth, quarters, recession = keras_mrnn.datasets.load_gnp()
    >>> growth.shape, quarters[0], quarters[-1], int(recession.sum())
    ((135,), '1951Q2', '1984Q4', 26)
    """
    path = os.path.join(os.path.dirname(__file__), "data", "gnp.csv")
    quarters, growth = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or line.startswith("quarter"):
                continue
            quarter, value = line.strip().split(",")
            quarters.append(quarter)
            growth.append(float(value))
    recession = np.zeros(len(quarters), bool)
    for start, end in NBER_RECESSIONS:
        recession[quarters.index(start):quarters.index(end) + 1] = True
    return np.array(growth), quarters, recession


class MarkovSwitchingAR:
    """A Markov-switching AR(1) process, its sampler and its Bayes filter.

    A hidden regime `s_t` in `{0, ..., K-1}` follows a sticky Markov chain
    (it stays with probability `stay_probability`, else jumps to one of the
    other regimes uniformly); given the regime, the observation follows an
    AR(1) of that regime's own mean, coefficient and noise scale:

        x_t = means[s_t] + coefficients[s_t] * (x_{t-1} - means[s_t])
              + scales[s_t] * eps_t,        eps_t ~ N(0, 1)

    The first regime is uniform and `x_0` is drawn from the stationary law
    of its AR(1), `N(mean, scale^2 / (1 - coefficient^2))`.

    With the true parameters, `filter` is the Bayes filter (the forward
    recursion `alpha_t ∝ (alpha_{t-1} P) * p(x_t | s_t, x_{t-1})`): the
    best possible estimate of the current regime from the past, and
    `predict_next` the Bayes-optimal prediction of the next value. They are
    the ceilings a learned model is measured against.

    The defaults give three regimes that differ in level, persistence and
    volatility: a calm one near 0, a persistent one near 2 and a volatile,
    oscillating one near -1.

    Args:
        means: Sequence of K floats, the level of each regime.
        coefficients: Sequence of K floats in (-1, 1), the AR coefficients.
        scales: Sequence of K positive floats, the noise scales.
        stay_probability: Float in (0, 1], probability that the regime
            stays the same from one step to the next.

    Example:

    >>> process = keras_mrnn.datasets.MarkovSwitchingAR()
    >>> x, regimes = process.sample(100, 200, seed=0)
    >>> x.shape, regimes.shape
    ((100, 200, 1), (100, 200))
    >>> posterior = process.filter(x)       # (100, 200, 3), rows sum to 1
    """

    def __init__(
        self,
        means=(0.0, 2.0, -1.0),
        coefficients=(0.5, 0.9, -0.5),
        scales=(0.3, 0.3, 1.0),
        stay_probability=0.95,
    ):
        arrays = {}
        for name, value in (
            ("means", means), ("coefficients", coefficients),
            ("scales", scales),
        ):
            try:
                array = np.asarray(value, dtype="float64")
            except (TypeError, ValueError):
                array = None
            if array is None or array.ndim != 1 or array.size == 0 or (
                not np.all(np.isfinite(array))
            ):
                raise ValueError(
                    f"Argument `{name}` must be a non-empty sequence of "
                    f"finite floats. Received: {name}={value!r}."
                )
            arrays[name] = array
        sizes = {name: a.size for name, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                "Arguments `means`, `coefficients` and `scales` must have one "
                f"entry per regime, the same number each. Received sizes "
                f"{sizes}."
            )
        if not np.all(np.abs(arrays["coefficients"]) < 1):
            raise ValueError(
                "Argument `coefficients` must lie in (-1, 1) (stationary "
                f"AR(1) regimes). Received: coefficients={coefficients!r}."
            )
        if not np.all(arrays["scales"] > 0):
            raise ValueError(
                "Argument `scales` must be positive. Received: "
                f"scales={scales!r}."
            )
        try:
            stay = float(stay_probability)
        except (TypeError, ValueError):
            stay = math.nan
        if isinstance(stay_probability, bool) or not 0 < stay <= 1:
            raise ValueError(
                "Argument `stay_probability` must be in (0, 1]. Received: "
                f"stay_probability={stay_probability!r}."
            )
        self.means = arrays["means"]
        self.coefficients = arrays["coefficients"]
        self.scales = arrays["scales"]
        self.stay_probability = stay
        self.num_regimes = self.means.size

    @property
    def transition_matrix(self):
        """The K x K matrix `P[i, j] = p(s_t = j | s_{t-1} = i)`."""
        k = self.num_regimes
        if k == 1:
            return np.ones((1, 1))
        jump = (1.0 - self.stay_probability) / (k - 1)
        return np.full((k, k), jump) + np.eye(k) * (
            self.stay_probability - jump
        )

    def sample(self, num_sequences, num_steps, seed=None):
        """Draws sequences and their true regimes.

        Args:
            num_sequences: Positive integer.
            num_steps: Positive integer, the length `T` of each sequence.
            seed: Optional non-negative integer seed.

        Returns:
            A tuple `(x, regimes)`: `x` float32 of shape
            `(num_sequences, num_steps, 1)` and `regimes` int32 of shape
            `(num_sequences, num_steps)`, the regime that generated each
            `x_t`.

        Example:

        >>> x, regimes = keras_mrnn.datasets.MarkovSwitchingAR().sample(
        ...     8, 50, seed=1)
        """
        n = check.positive_int("num_sequences", num_sequences)
        steps = check.positive_int("num_steps", num_steps)
        rng = np.random.default_rng(_seed(seed))
        k = self.num_regimes
        cumulative = np.cumsum(self.transition_matrix, axis=1)
        regimes = np.empty((n, steps), dtype="int32")
        x = np.empty((n, steps))
        regimes[:, 0] = rng.integers(0, k, size=n)
        s = regimes[:, 0]
        stationary_scale = self.scales / np.sqrt(1 - self.coefficients ** 2)
        x[:, 0] = self.means[s] + stationary_scale[s] * rng.standard_normal(n)
        for t in range(1, steps):
            u = rng.random(n)
            s = np.minimum((u[:, None] > cumulative[s]).sum(axis=1), k - 1)
            regimes[:, t] = s
            x[:, t] = (
                self.means[s]
                + self.coefficients[s] * (x[:, t - 1] - self.means[s])
                + self.scales[s] * rng.standard_normal(n)
            )
        return x[..., None].astype("float32"), regimes

    def _log_likelihoods(self, x):
        """`log p(x_t | s_t = k, x_{t-1})`, shape `(n, T, K)` (float64)."""
        x = _series(x)
        mean = np.empty(x.shape + (self.num_regimes,))
        scale = np.empty_like(mean)
        mean[:, 0] = self.means
        scale[:, 0] = self.scales / np.sqrt(1 - self.coefficients ** 2)
        mean[:, 1:] = self.means + self.coefficients * (
            x[:, :-1, None] - self.means
        )
        scale[:, 1:] = self.scales
        return (
            -0.5 * ((x[..., None] - mean) / scale) ** 2
            - np.log(scale) - 0.5 * np.log(2 * np.pi)
        )

    def filter(self, x):
        """The Bayes filter: `p(s_t | x_0, ..., x_t)` with the true parameters.

        Args:
            x: Array `(n, T)` or `(n, T, 1)` of observations.

        Returns:
            float64 array `(n, T, K)`: the filtered regime probabilities.

        Example:

        >>> process = keras_mrnn.datasets.MarkovSwitchingAR()
        >>> x, regimes = process.sample(10, 100, seed=0)
        >>> accuracy = np.mean(process.filter(x).argmax(-1) == regimes)
        """
        log_likelihood = self._log_likelihoods(x)
        n, steps, k = log_likelihood.shape
        transition = self.transition_matrix
        posterior = np.empty((n, steps, k))
        prior = np.full((n, k), 1.0 / k)
        for t in range(steps):
            # Scaled forward recursion: shifting by the max keeps exp finite.
            log_joint = np.log(prior) + log_likelihood[:, t]
            weights = np.exp(log_joint - log_joint.max(axis=1, keepdims=True))
            posterior[:, t] = weights / weights.sum(axis=1, keepdims=True)
            prior = np.maximum(posterior[:, t] @ transition, 1e-300)
        return posterior

    def predict_next(self, x):
        """Bayes-optimal prediction of `x_{t+1}` from `x_0, ..., x_t`.

        `E[x_{t+1} | x_0..t] = sum_k (alpha_t P)[k] *
        (means[k] + coefficients[k] * (x_t - means[k]))`.

        Args:
            x: Array `(n, T)` or `(n, T, 1)` of observations.

        Returns:
            float64 array `(n, T)`: the prediction of the value after each
            step (the last one predicts beyond the sequence).

        Example:

        >>> process = keras_mrnn.datasets.MarkovSwitchingAR()
        >>> x, _ = process.sample(10, 100, seed=0)
        >>> mse = np.mean((process.predict_next(x)[:, :-1] - x[:, 1:, 0]) ** 2)
        """
        series = _series(x)
        next_regime = self.filter(series) @ self.transition_matrix
        conditional = self.means + self.coefficients * (
            series[..., None] - self.means
        )
        return np.sum(next_regime * conditional, axis=-1)


def _series(x):
    """`x` as a float64 `(n, T)` array, from `(n, T)` or `(n, T, 1)`."""
    array = np.asarray(x, dtype="float64")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(
            "Argument `x` must be an array of shape (n, T) or (n, T, 1) with "
            f"T > 0. Received shape {np.shape(x)}."
        )
    return array


def normalized_mutual_information(labels_true, labels_pred):
    """Normalized mutual information between two labellings.

    `I(A; B) / sqrt(H(A) H(B))`, in nats from the joint counts: 1 when one
    labelling is a relabelling of the other (which index a model gives each
    regime does not matter), near 0 for unrelated labels. When either
    labelling is constant the score is 1 if both are, else 0.

    Args:
        labels_true: Integer array of any shape.
        labels_pred: Integer array of the same shape.

    Returns:
        A Python float in [0, 1].

    Example:

    >>> keras_mrnn.datasets.normalized_mutual_information([0, 0, 1, 1],
    ...                                                   [1, 1, 0, 0])
    1.0
    """
    a = np.asarray(labels_true).ravel()
    b = np.asarray(labels_pred).ravel()
    if np.shape(labels_true) != np.shape(labels_pred) or a.size == 0:
        raise ValueError(
            "Arguments `labels_true` and `labels_pred` must be non-empty and "
            f"of the same shape. Received shapes {np.shape(labels_true)} and "
            f"{np.shape(labels_pred)}."
        )
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= a.size
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    entropy_a = -np.sum(pa * np.log(pa))
    entropy_b = -np.sum(pb * np.log(pb))
    if entropy_a == 0 or entropy_b == 0:
        return float(entropy_a == entropy_b)
    nonzero = joint > 0
    mutual = np.sum(
        joint[nonzero] * np.log(joint[nonzero] / np.outer(pa, pb)[nonzero])
    )
    return float(min(max(mutual / np.sqrt(entropy_a * entropy_b), 0.0), 1.0))
