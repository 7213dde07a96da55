"""Data sets of the examples: MNIST from a local file, two synthetic tasks.

- `load_mnist`: MNIST from a local `mnist.npz` (argument or the `MNIST_NPZ`
  environment variable), else `keras.datasets.mnist.load_data()`.
- `alien_signal`: the binary "alien signal" task of the Markov RNN reference
  code (a sine wave with or without a hidden high-frequency cosine).
- `stateful_cosine`: the damped cosine series of Keras's classic stateful
  LSTM example, with its "mean of the next `lahead` values" target.
"""

import math
import numbers
import os

import numpy as np

from keras_mrnn import _validation as check

MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")


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

    >>> (x_train, y_train), (x_test, y_test) = keras_mrnn.datasets.load_mnist(
    ...     "/path/to/mnist.npz")  # or None: $MNIST_NPZ, else a download
    >>> x_train.shape, x_test.shape
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
