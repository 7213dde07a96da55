"""Figures of the examples, for your own models too.

Every function returns a `matplotlib.figure.Figure` made with the
object-oriented API (no `pyplot` state is touched, so it works under any
backend, including the headless `Agg`); save it with `fig.savefig(path)`.

- `plot_switches`: `q_z(t)` and `z(t)` of a Markov LSTM as K x T heatmaps.
- `plot_regimes`: one sequence with its true regimes above `q_z(t)` and
  `z(t)` (and a reference posterior, e.g. a Bayes filter's).
- `state_usage` / `plot_state_usage`: how often each of the K LSTMs is
  chosen, overall and per class.
- `plot_predictions`: expected against predicted series.
- `plot_image_grid`: a grid of images (e.g. generated or reconstructed
  digits).
- `plot_history`: the curves of a `keras.callbacks.History`.
- `plot_forecast`: a forecast's fan of quantiles above its future
  regime probabilities.
"""

import numpy as np
from matplotlib.figure import Figure

from keras_mrnn import _validation as check


def _array(name, value, ndims):
    try:
        array = np.asarray(value, dtype="float64")
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"Argument `{name}` must be array-like of numbers. Received: "
            f"{name} of type {type(value).__name__}."
        ) from error
    if array.ndim not in ndims:
        raise ValueError(
            f"Argument `{name}` must have {' or '.join(map(str, ndims))} "
            f"dimensions. Received: {name} with shape {array.shape}."
        )
    return array


def _names(name, value, count):
    if value is None:
        return None
    value = [str(v) for v in value]
    if len(value) != count:
        raise ValueError(
            f"Argument `{name}` must have {count} entries. Received: "
            f"{name}={value!r}."
        )
    return value


def plot_switches(q, z, inputs=None, titles=None, figsize=None):
    """Draws the switch probabilities `q_z(t)` and switches `z(t)`.

    One row per sample: the input signal (if `inputs` is given), then
    `q_z(t)` and `z(t)` as heatmaps with the K states on the vertical axis
    and the time steps on the horizontal axis, on a shared 0..1 color
    scale. Get `q` and `z` from `keras_mrnn.MarkovLSTM(...,
    return_switches=True)`.

    Args:
        q: Switch probabilities, `(time, K)` for one sample or
            `(samples, time, K)`.
        z: Switches of the same shape as `q`.
        inputs: Optional inputs of the samples, `(time,)` or
            `(time, features)` for one sample, or `(samples, time)` or
            `(samples, time, features)`; drawn as lines (features with more
            than one channel, e.g. image rows, as a heatmap).
        titles: Optional list of one title per sample (e.g. its label).
        figsize: Optional `(width, height)` in inches.

    Returns:
        A `matplotlib.figure.Figure` with `samples * (2 + (inputs is not
        None))` axes plus one color-bar axis.

    Example:

    >>> x = np.random.random((3, 20, 1)).astype("float32")
    >>> layer = keras_mrnn.MarkovLSTM(8, num_states=4, return_switches=True)
    >>> h, q, z = layer(x)
    >>> fig = keras_mrnn.plotting.plot_switches(q, z, inputs=x)
    >>> fig.savefig("switches.png")
    >>> len(fig.axes)  # 3 samples x (input, q, z), and the color bar
    10
    """
    q = _array("q", q, (2, 3))
    z = _array("z", z, (2, 3))
    if q.shape != z.shape:
        raise ValueError(
            "Arguments `q` and `z` must have the same shape. Received: "
            f"q with shape {q.shape} and z with shape {z.shape}."
        )
    if q.ndim == 2:
        q, z = q[None], z[None]
    samples, steps, num_states = q.shape
    if inputs is not None:
        inputs = _array("inputs", inputs, (1, 2, 3))
        if q.shape[0] == 1 and inputs.ndim < 3 and inputs.shape[0] == steps:
            inputs = inputs[None]
        if inputs.ndim == 2:
            inputs = inputs[..., None]
        if inputs.ndim != 3 or inputs.shape[:2] != (samples, steps):
            raise ValueError(
                "Argument `inputs` must hold the same samples and time steps "
                f"as `q` ({samples} x {steps}). Received: inputs with shape "
                f"{inputs.shape}."
            )
    titles = _names("titles", titles, samples)
    columns = 2 + (inputs is not None)
    if figsize is None:
        figsize = (4.0 * columns + 1.0, 1.1 + 0.35 * num_states * samples
                   + 0.8 * samples)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(samples, columns, squeeze=False)
    image = None
    for row in range(samples):
        column = 0
        if inputs is not None:
            ax = axes[row, 0]
            if inputs.shape[-1] == 1:
                ax.plot(np.arange(steps), inputs[row, :, 0], lw=1)
                ax.set_xlim(0, steps - 1)
                ax.set_ylabel("input")
            else:
                # One column per step: an image read row by row appears
                # transposed, time running left to right.
                ax.imshow(inputs[row].T, aspect="auto", cmap="gray_r",
                          interpolation="nearest")
                ax.set_ylabel("input features")
            column = 1
        for values, name, ax in (
            (q[row], "$q_z(t)$", axes[row, column]),
            (z[row], "$z(t)$", axes[row, column + 1]),
        ):
            image = ax.imshow(
                values.T, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                interpolation="nearest", origin="lower",
            )
            ax.set_yticks(range(num_states))
            ax.set_ylabel("state k")
            ax.set_title(name if titles is None else f"{titles[row]}: {name}",
                         fontsize=9)
        if titles is not None and inputs is not None:
            axes[row, 0].set_title(titles[row], fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("time step t")
    fig.colorbar(image, ax=axes, shrink=0.8, label="probability")
    return fig


def plot_regimes(inputs, regimes, q, z=None, reference=None,
                 reference_name="Bayes filter", title=None, figsize=None,
                 smoothed=None, viterbi=None, regime_name="true regime"):
    """Draws one sequence, its true regimes, and the switches above each other.

    Panels, sharing the time axis: the input series on a background coloured
    by the true regime, the true regime as a one-hot `K x T` map, then
    `reference` (e.g. the Bayes filter's `p(s_t | x_0..t)`), `q_z(t)` (the
    filter), the smoothed posterior, the Viterbi path and `z(t)` when
    given. A model numbers its states as it likes: reorder them
    (`q[:, order]`) to line them up with the true regimes before drawing.

    Args:
        inputs: The series, `(time,)` or `(time, 1)`.
        regimes: Integer true regimes, `(time,)`, in `[0, K)` (or known
            labels, such as recessions).
        q: Switch probabilities `(time, K)`.
        z: Optional switches `(time, K)`.
        reference: Optional regime probabilities `(time, K)`.
        reference_name: Label of the `reference` panel.
        smoothed: Optional smoothed probabilities `(time, K)`, e.g.
            `MarkovLSTM.regime_probabilities(x, smoothed=True)[i]`.
        viterbi: Optional integer states `(time,)`, e.g.
            `MarkovLSTM.most_likely_regimes(x)[i]`, drawn one-hot.
        regime_name: Label of the `regimes` panel.
        title: Optional title of the figure.
        figsize: Optional `(width, height)` in inches.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    >>> process = keras_mrnn.datasets.MarkovSwitchingAR()
    >>> x, regimes = process.sample(1, 200, seed=0)
    >>> fig = keras_mrnn.plotting.plot_regimes(
    ...     x[0], regimes[0], q=process.filter(x)[0])
    >>> fig.savefig("regimes.png")
    >>> layer = keras_mrnn.MarkovLSTM(8, num_states=3, switch="hmm")
    >>> _ = layer.adapt(x, restarts=2, seed=0)
    >>> fig = keras_mrnn.plotting.plot_regimes(
    ...     x[0], regimes[0], q=layer.regime_probabilities(x)[0],
    ...     smoothed=layer.regime_probabilities(x, smoothed=True)[0],
    ...     viterbi=layer.most_likely_regimes(x)[0])
    """
    inputs = _array("inputs", inputs, (1, 2))
    if inputs.ndim == 2 and inputs.shape[1] != 1:
        raise ValueError(
            "Argument `inputs` must be one series, of shape (time,) or "
            f"(time, 1). Received: inputs with shape {inputs.shape}."
        )
    inputs = inputs.reshape(-1)
    steps = inputs.size
    q = _array("q", q, (2,))
    regimes = np.asarray(regimes)
    if regimes.shape != (steps,) or not np.issubdtype(
        regimes.dtype, np.integer
    ) or regimes.min() < 0:
        raise ValueError(
            f"Argument `regimes` must be {steps} non-negative integers, one "
            f"per step of `inputs`. Received: regimes with shape "
            f"{regimes.shape} and dtype {regimes.dtype}."
        )
    panels = [(regime_name, np.eye(int(regimes.max()) + 1)[regimes])]
    if viterbi is not None:
        viterbi = np.asarray(viterbi)
        if viterbi.shape != (steps,) or not np.issubdtype(
            viterbi.dtype, np.integer
        ) or viterbi.min() < 0 or viterbi.max() >= q.shape[-1]:
            raise ValueError(
                f"Argument `viterbi` must be {steps} integers in [0, "
                f"{q.shape[-1]}), one per step of `inputs`. Received: viterbi "
                f"with shape {viterbi.shape} and dtype {viterbi.dtype}."
            )
        viterbi = np.eye(q.shape[-1])[viterbi]
    for argument, label, values in (
        ("reference", reference_name, reference), ("q", "$q_z(t)$", q),
        ("smoothed", "smoothed", smoothed), ("viterbi", "Viterbi", viterbi),
        ("z", "$z(t)$", z),
    ):
        if values is None:
            continue
        if values is not q:
            values = _array(argument, values, (2,))
        if values.shape[0] != steps or (
            argument in ("z", "smoothed") and values.shape != q.shape
        ):
            raise ValueError(
                f"Argument `{argument}` must have {steps} steps, one per "
                f"step of `inputs`" + (
                    f", and the shape of `q` {q.shape}"
                    if argument in ("z", "smoothed") else ""
                ) + f". Received: {argument} with shape {values.shape}."
            )
        panels.append((label, values))
    if figsize is None:
        figsize = (10.0, 1.8 + 0.3 * sum(p.shape[1] for _, p in panels))
    fig = Figure(figsize=figsize, layout="constrained")
    ratios = [3] + [max(p.shape[1], 2) for _, p in panels]
    axes = fig.subplots(len(ratios), 1, sharex=True,
                        gridspec_kw={"height_ratios": ratios})
    colours = [f"C{k % 10}" for k in range(panels[0][1].shape[1])]
    # Shade each run of one regime behind the series.
    changes = np.flatnonzero(np.diff(regimes)) + 1
    for start, stop in zip(np.r_[0, changes], np.r_[changes, steps]):
        axes[0].axvspan(start - 0.5, stop - 0.5, color=colours[regimes[start]],
                        alpha=0.15, lw=0)
    axes[0].plot(np.arange(steps), inputs, lw=1, color="k")
    axes[0].set_ylabel("input")
    axes[0].set_xlim(-0.5, steps - 0.5)
    image = None
    for ax, (name, values) in zip(axes[1:], panels):
        image = ax.imshow(values.T, aspect="auto", cmap="viridis", vmin=0.0,
                          vmax=1.0, interpolation="nearest", origin="lower")
        ax.set_yticks(range(values.shape[1]))
        ax.set_ylabel(name, fontsize=9)
    axes[-1].set_xlabel("time step t")
    fig.colorbar(image, ax=list(axes[1:]), shrink=0.8, label="probability")
    if title:
        fig.suptitle(title)
    return fig


def state_usage(z, labels=None):
    """How often each of the K states is chosen, overall and per class.

    A step counts for the state with the largest `z(t)` (the chosen LSTM;
    the switch itself at inference, the largest weight of a relaxed sample
    while training).

    Args:
        z: Switches `(samples, time, K)` (or `(time, K)` for one sample).
        labels: Optional integer class of each sample, `(samples,)`.

    Returns:
        With no labels, a NumPy array `(K,)` of frequencies summing to one.
        With labels, a dict `{class: (K,) array}` for each class, in sorted
        order, plus the key `"overall"`.

    Example:

    >>> keras_mrnn.plotting.state_usage(np.eye(3)[None])
    array([0.33333333, 0.33333333, 0.33333333])
    """
    z = _array("z", z, (2, 3))
    if z.ndim == 2:
        z = z[None]
    num_states = z.shape[-1]
    chosen = np.argmax(z, axis=-1)

    def frequencies(rows):
        counts = np.bincount(rows.ravel(), minlength=num_states)
        return counts / max(counts.sum(), 1)

    if labels is None:
        return frequencies(chosen)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != z.shape[0]:
        raise ValueError(
            "Argument `labels` must have one entry per sample "
            f"({z.shape[0]}). Received: labels with shape {labels.shape}."
        )
    usage = {
        label.item(): frequencies(chosen[labels == label])
        for label in np.unique(labels)
    }
    usage["overall"] = frequencies(chosen)
    return usage


def plot_state_usage(z, labels=None, class_names=None, columns=4,
                     figsize=None):
    """Bar charts of how often each of the K states is chosen.

    Draws one chart for all samples and, with `labels`, one per class
    first (as the Markov RNN reference does for its tasks).

    Args:
        z: Switches `(samples, time, K)`, e.g. the `z` output of
            `keras_mrnn.MarkovLSTM(..., return_switches=True)`.
        labels: Optional integer class of each sample, `(samples,)`.
        class_names: Optional names of the classes, one per distinct label
            in sorted order (default: the labels themselves).
        columns: Positive integer, charts per row.
        figsize: Optional `(width, height)` in inches.

    Returns:
        A `matplotlib.figure.Figure` with one axis per class plus one for
        "overall" (a single axis without labels). Unused grid cells are
        removed.

    Example:

    >>> x = np.random.random((10, 20, 1)).astype("float32")
    >>> labels = np.array([0, 1] * 5)
    >>> _, _, z = keras_mrnn.MarkovLSTM(8, return_switches=True)(x)
    >>> fig = keras_mrnn.plotting.plot_state_usage(z, labels=labels)
    >>> fig.savefig("state_usage.png")
    >>> [ax.get_title() for ax in fig.axes]
    ['0', '1', 'overall']
    """
    columns = check.positive_int("columns", columns)
    usage = state_usage(z, labels)
    if labels is None:
        charts = [("overall", usage)]
    else:
        keys = [key for key in usage if key != "overall"]
        names = _names("class_names", class_names, len(keys))
        names = names or [str(key) for key in keys]
        charts = [(name, usage[key]) for name, key in zip(names, keys)]
        charts.append(("overall", usage["overall"]))
    num_states = len(charts[0][1])
    columns = min(columns, len(charts))
    rows = -(-len(charts) // columns)
    if figsize is None:
        figsize = (2.6 * columns + 0.4, 2.2 * rows + 0.4)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, values) in zip(axes, charts):
        ax.bar(range(num_states), values,
               color=[f"C{k}" for k in range(num_states)])
        ax.set_xticks(range(num_states))
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("state k")
    for ax in axes[:: columns]:
        ax.set_ylabel("fraction of steps")
    for ax in axes[len(charts):]:
        ax.remove()
    return fig


def plot_predictions(expected, predicted, title=None, max_points=None,
                     figsize=(10.0, 5.0)):
    """Draws an expected series against its prediction, and the error.

    Args:
        expected: 1-D array (or `(n, 1)`) of targets.
        predicted: Array of the same number of values.
        title: Optional title of the figure.
        max_points: Optional positive integer: draw only the first
            `max_points` values.
        figsize: `(width, height)` in inches.

    Returns:
        A `matplotlib.figure.Figure` with two axes: expected and predicted
        on top, `predicted - expected` below.

    Example:

    >>> x = np.random.random((32, 10, 1)).astype("float32")
    >>> y = x[:, -1]
    >>> model = keras.Sequential([
    ...     keras.Input((10, 1)), keras_mrnn.MarkovLSTM(4),
    ...     keras.layers.Dense(1)])
    >>> fig = keras_mrnn.plotting.plot_predictions(
    ...     y, model.predict(x, verbose=0))
    >>> fig.savefig("predictions.png")
    >>> len(fig.axes)  # expected and predicted, then the error
    2
    """
    expected = _array("expected", expected, (1, 2)).reshape(-1)
    predicted = _array("predicted", predicted, (1, 2)).reshape(-1)
    if expected.shape != predicted.shape:
        raise ValueError(
            "Arguments `expected` and `predicted` must hold the same number "
            f"of values. Received: {expected.size} and {predicted.size}."
        )
    if max_points is not None:
        max_points = check.positive_int("max_points", max_points)
        expected, predicted = expected[:max_points], predicted[:max_points]
    fig = Figure(figsize=figsize, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    steps = np.arange(expected.size)
    top.plot(steps, expected, lw=1, label="expected")
    top.plot(steps, predicted, lw=1, alpha=0.8, label="predicted")
    top.legend(loc="upper right")
    top.set_ylabel("value")
    bottom.plot(steps, predicted - expected, lw=1, color="C3")
    bottom.set_ylabel("predicted - expected")
    bottom.set_xlabel("step")
    if title:
        fig.suptitle(title)
    return fig


def plot_image_grid(images, columns=10, title=None, figsize=None):
    """Tiles images into one grid image (e.g. generated digits).

    Args:
        images: `(n, height, width)` or `(n, height, width, 1)` array of
            floats in `[0, 1]`, or of integers in `[0, 255]` (e.g. the
            `uint8` images of `keras.datasets.mnist`).
        columns: Positive integer, images per row.
        title: Optional title.
        figsize: Optional `(width, height)` in inches.

    Returns:
        A `matplotlib.figure.Figure` with a single axis.

    Example:

    >>> images = np.random.randint(0, 256, (20, 28, 28), dtype="uint8")
    >>> fig = keras_mrnn.plotting.plot_image_grid(images)
    >>> fig.savefig("digits.png")
    >>> fig.axes[0].get_images()[0].get_array().shape  # 2 rows of 10
    (59, 291)
    """
    integers = np.issubdtype(np.asarray(images).dtype, np.integer)
    images = _array("images", images, (3, 4))
    if images.ndim == 4:
        if images.shape[-1] != 1:
            raise ValueError(
                "Argument `images` must have one channel when it has 4 "
                f"dimensions. Received: images with shape {images.shape}."
            )
        images = images[..., 0]
    low, high = (0, 255) if integers else (0.0, 1.0)
    if images.size and (images.min() < low or images.max() > high):
        raise ValueError(
            f"Argument `images` must hold values in [{low}, {high}] "
            f"({'integers' if integers else 'floats'}). Received values in "
            f"[{images.min():g}, {images.max():g}]."
        )
    if integers:
        images = images / 255.0
    columns = check.positive_int("columns", columns)
    count, height, width = images.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    grid = np.ones((rows * (height + 1) + 1, columns * (width + 1) + 1))
    for index, image in enumerate(images):
        r, c = divmod(index, columns)
        top, left = 1 + r * (height + 1), 1 + c * (width + 1)
        grid[top:top + height, left:left + width] = 1.0 - image
    if figsize is None:
        figsize = (0.6 * columns + 0.4, 0.6 * rows + (0.6 if title else 0.3))
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def plot_history(history, metrics=None, figsize=None):
    """Draws training curves, one axis per metric (with its `val_` twin).

    Args:
        history: A `keras.callbacks.History` (what `fit` returns) or its
            `history` dict.
        metrics: Optional metric name or list of names to draw (default:
            every metric without the `val_` prefix).
        figsize: Optional `(width, height)` in inches.

    Returns:
        A `matplotlib.figure.Figure` with one axis per metric.

    Example:

    >>> history = {"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.7, 0.6],
    ...            "mae": [0.8, 0.6, 0.5]}  # or the History `fit` returns
    >>> fig = keras_mrnn.plotting.plot_history(history)
    >>> fig.savefig("history.png")
    >>> [ax.get_title() for ax in fig.axes]
    ['loss', 'mae']
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise TypeError(
            "Argument `history` must be a keras.callbacks.History or a "
            f"non-empty dict of metric lists. Received: {history!r}."
        )
    if metrics is None:
        metrics = [name for name in logs if not name.startswith("val_")]
    elif isinstance(metrics, str):
        metrics = [metrics]
    missing = [name for name in metrics if name not in logs]
    if missing or not metrics:
        raise ValueError(
            f"Argument `metrics` names metrics absent from the history: "
            f"{missing or metrics}. Available: {sorted(logs)}."
        )
    if figsize is None:
        figsize = (3.2 * len(metrics) + 0.4, 2.8)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, name in zip(axes, metrics):
        epochs = np.arange(1, len(logs[name]) + 1)
        ax.plot(epochs, logs[name], marker="o", label=name)
        if f"val_{name}" in logs:
            ax.plot(epochs, logs[f"val_{name}"], marker="o",
                    label=f"val_{name}")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8)
    return fig


def plot_forecast(history, forecast, sequence=0, feature=0, times=None,
                  last=100, title=None, figsize=None):
    """Draws a forecast as a fan chart, above its future regimes.

    Top: the last `last` values of the history, then the forecast's median
    (or mean) and the bands between its symmetric quantiles (the widest
    lightest). Bottom: the probability of each regime at every future step
    (stacked areas).

    Args:
        history: The history of the forecast sequence, `(time,)` or
            `(time, features)` (or the whole batch, `(batch, time,
            features)`, of which `sequence` is drawn).
        forecast: What `MarkovLSTM.forecast` or `RegimeMixture.forecast`
            returned (a `RegimeForecast`).
        sequence: Which sequence of the forecast to draw.
        feature: Which feature to draw.
        times: Optional `(time + horizon,)` numbers for the x-axis (e.g.
            years); default the step indices.
        last: Positive integer, the number of history steps drawn.
        title: Optional title.
        figsize: Optional `(width, height)` in inches.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    >>> process = keras_mrnn.datasets.MarkovSwitchingAR()
    >>> x, _ = process.sample(10, 80, seed=0)
    >>> layer = keras_mrnn.MarkovLSTM(4, num_states=3, switch="hmm")
    >>> _ = layer.adapt(x, restarts=2, seed=0)
    >>> result = layer.forecast(x[:1], horizon=10, num_samples=500,
    ...                         quantiles=(0.05, 0.25, 0.5, 0.75, 0.95),
    ...                         seed=0)
    >>> fig = keras_mrnn.plotting.plot_forecast(x[0], result, last=40)
    >>> len(fig.axes)
    2
    """
    last = check.positive_int("last", last)
    history = _array("history", history, (1, 2, 3))
    if history.ndim == 3:
        history = history[sequence]
    if history.ndim == 1:
        history = history[:, None]
    history = history[:, feature]
    levels = np.asarray(forecast.quantile_levels, "float64")
    quantiles = np.asarray(forecast.quantiles)[:, sequence, :, feature]
    probabilities = np.asarray(forecast.regime_probabilities)[sequence]
    horizon, k = probabilities.shape
    steps = len(history)
    if times is None:
        times = np.arange(steps + horizon, dtype="float64")
    times = _array("times", times, (1,))
    if len(times) != steps + horizon:
        raise ValueError(
            f"Argument `times` must have {steps + horizon} entries (the "
            f"history's {steps} and the horizon's {horizon}). Received: "
            f"times with shape {times.shape}.")
    shown = slice(max(0, steps - last), steps)
    future = times[steps:]
    fig = Figure(figsize=figsize or (8.0, 4.5))
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
    top = fig.add_subplot(grid[0])
    bottom = fig.add_subplot(grid[1], sharex=top)
    top.plot(times[shown], history[shown], color="k", lw=1.0,
             label="history")
    # The bands between symmetric quantiles, widest first.
    pairs = [(i, len(levels) - 1 - i) for i in range(len(levels) // 2)]
    for rank, (low, high) in enumerate(pairs):
        top.fill_between(
            future, quantiles[low], quantiles[high], color="C0",
            alpha=0.15 + 0.5 * rank / max(len(pairs), 1), lw=0,
            label=f"{levels[high] - levels[low]:.0%} interval")
    median = np.flatnonzero(np.isclose(levels, 0.5))
    centre = (quantiles[median[0]] if median.size
              else np.asarray(forecast.mean)[sequence, :, feature])
    top.plot(future, centre, color="C0", lw=1.5,
             label="median" if median.size else "mean")
    top.legend(loc="upper left", fontsize="small", frameon=False)
    top.tick_params(labelbottom=False)
    if title:
        top.set_title(title)
    bottom.stackplot(future, probabilities.T,
                     colors=[f"C{i + 1}" for i in range(k)],
                     labels=[f"regime {i}" for i in range(k)])
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("P(regime)")
    bottom.legend(loc="upper left", fontsize="x-small", ncol=k,
                  frameon=False)
    return fig
