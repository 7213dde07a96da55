"""Tests of keras_mrnn.plotting (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from keras_mrnn import plotting  # noqa: E402


def _switches(samples=3, steps=12, k=4, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.ones(k), size=(samples, steps))
    z = np.eye(k)[q.argmax(-1)]
    return q.astype("float32"), z.astype("float32")


def test_plot_switches_axes(tmp_path):
    q, z = _switches()
    fig = plotting.plot_switches(q, z)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 2 + 1  # q and z per sample, one color bar
    fig = plotting.plot_switches(q, z, inputs=np.zeros((3, 12, 1)),
                                 titles=["a", "b", "c"])
    assert len(fig.axes) == 3 * 3 + 1
    fig.savefig(tmp_path / "switches.png")
    assert (tmp_path / "switches.png").stat().st_size > 0


def test_plot_switches_single_sample_and_image_inputs():
    q, z = _switches(samples=1)
    fig = plotting.plot_switches(q[0], z[0], inputs=np.zeros(12))
    assert len(fig.axes) == 4
    q, z = _switches(samples=2, steps=28)
    fig = plotting.plot_switches(q, z, inputs=np.zeros((2, 28, 28)))
    assert len(fig.axes) == 7


def test_plot_switches_validation():
    q, z = _switches()
    with pytest.raises(ValueError, match="same shape"):
        plotting.plot_switches(q, z[:, :5])
    with pytest.raises(ValueError, match="`q`"):
        plotting.plot_switches(q[0, 0], z[0, 0])
    with pytest.raises(ValueError, match="inputs"):
        plotting.plot_switches(q, z, inputs=np.zeros((2, 12)))
    with pytest.raises(ValueError, match="titles"):
        plotting.plot_switches(q, z, titles=["only one"])


def test_state_usage_values():
    z = np.eye(3)[[[0, 0, 1, 2], [2, 2, 2, 2]]]
    np.testing.assert_allclose(plotting.state_usage(z), [2 / 8, 1 / 8, 5 / 8])
    usage = plotting.state_usage(z, labels=[7, 3])
    assert list(usage) == [3, 7, "overall"]
    np.testing.assert_allclose(usage[7], [0.5, 0.25, 0.25])
    np.testing.assert_allclose(usage[3], [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="labels"):
        plotting.state_usage(z, labels=[1, 2, 3])


def test_plot_state_usage_axes():
    _, z = _switches(samples=20)
    fig = plotting.plot_state_usage(z)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    labels = np.arange(20) % 10
    fig = plotting.plot_state_usage(z, labels=labels, columns=4)
    assert len(fig.axes) == 11  # ten classes and overall; empty cells gone
    fig = plotting.plot_state_usage(z, labels=labels % 2,
                                    class_names=["plain", "alien"])
    assert [ax.get_title() for ax in fig.axes] == [
        "plain", "alien", "overall"]
    with pytest.raises(ValueError, match="class_names"):
        plotting.plot_state_usage(z, labels=labels % 2, class_names=["x"])
    with pytest.raises(ValueError, match="columns"):
        plotting.plot_state_usage(z, columns=0)


def test_plot_predictions():
    t = np.linspace(0, 10, 200)
    fig = plotting.plot_predictions(np.sin(t)[:, None], np.sin(t) + 0.1,
                                    title="x", max_points=100)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), 0.1)
    assert len(fig.axes[0].lines[0].get_xdata()) == 100
    with pytest.raises(ValueError, match="same number"):
        plotting.plot_predictions(t, t[:-1])
    with pytest.raises(ValueError, match="max_points"):
        plotting.plot_predictions(t, t, max_points=0)


def test_plot_image_grid():
    fig = plotting.plot_image_grid(np.random.rand(23, 28, 28), columns=10,
                                   title="digits")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (3 * 29 + 1, 10 * 29 + 1)
    with pytest.raises(ValueError, match="images"):
        plotting.plot_image_grid(np.zeros((28, 28)))
    with pytest.raises(ValueError, match="columns"):
        plotting.plot_image_grid(np.zeros((2, 28, 28)), columns=-1)


def test_plot_image_grid_accepts_uint8_and_a_channel_axis():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(4, 5, 6), dtype=np.uint8)
    expected = plotting.plot_image_grid(pixels / 255.0).axes[0].images[0]
    for images in (pixels, pixels[..., None], pixels[..., None] / 255.0):
        grid = plotting.plot_image_grid(images).axes[0].images[0]
        np.testing.assert_allclose(grid.get_array(), expected.get_array())
    # 0-255 floats would be drawn saturated: refused instead.
    with pytest.raises(ValueError, match=r"images.*\[0.0, 1.0\]"):
        plotting.plot_image_grid(pixels.astype("float32"))
    with pytest.raises(ValueError, match="one channel"):
        plotting.plot_image_grid(np.zeros((2, 5, 5, 3)))


def test_plot_history():
    logs = {"loss": [1.0, 0.5], "val_loss": [1.2, 0.7], "accuracy": [0.3, 0.6]}
    fig = plotting.plot_history(logs)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 2  # loss and val_loss
    with pytest.raises(ValueError, match="absent"):
        plotting.plot_history(logs, metrics=["auc"])
    # One name as a string, not its letters.
    fig = plotting.plot_history(logs, metrics="loss")
    assert [ax.get_title() for ax in fig.axes] == ["loss"]
    with pytest.raises(TypeError, match="history"):
        plotting.plot_history([])


def test_plot_history_takes_the_history_that_fit_returns():
    # (The docstring's example passes the dict.)
    import keras

    history = keras.callbacks.History()
    history.history = {"loss": [1.0, 0.5], "mae": [0.9, 0.4],
                       "val_mae": [1.0, 0.6]}
    fig = plotting.plot_history(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "mae"]
    assert len(fig.axes[1].lines) == 2  # mae and val_mae


def test_plot_regimes_panels_and_shading(tmp_path):
    q, z = _switches(samples=1, steps=30, k=3)
    regimes = np.repeat([0, 2, 1], 10)
    fig = plotting.plot_regimes(np.arange(30.0), regimes, q[0], z=z[0],
                                reference=q[0], title="t")
    # Input, true regime, reference, q, z, and the colour bar.
    assert len(fig.axes) == 6
    # One shaded span per run of a regime behind the input.
    assert len(fig.axes[0].patches) == 3
    image = fig.axes[1].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(image).argmax(0), regimes)
    fig.savefig(tmp_path / "regimes.png")
    fig = plotting.plot_regimes(np.zeros((30, 1)), regimes, q[0])
    assert len(fig.axes) == 4


def test_plot_regimes_bad_input():
    q, _ = _switches(samples=1, steps=10, k=2)
    with pytest.raises(ValueError, match="regimes"):
        plotting.plot_regimes(np.zeros(10), np.zeros(9, int), q[0])
    with pytest.raises(ValueError, match="regimes"):
        plotting.plot_regimes(np.zeros(10), np.full(10, 0.5), q[0])
    with pytest.raises(ValueError, match="`q` must have 10 steps"):
        plotting.plot_regimes(np.zeros(10), np.zeros(10, int), q[0, :5])
    with pytest.raises(ValueError, match="`inputs` must be one series"):
        plotting.plot_regimes(np.zeros((5, 2)), np.zeros(10, int), q[0])
    with pytest.raises(ValueError, match="`z` must have 10 steps.*shape"):
        plotting.plot_regimes(np.zeros(10), np.zeros(10, int), q[0],
                              z=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="`reference` must have 10 steps"):
        plotting.plot_regimes(np.zeros(10), np.zeros(10, int), q[0],
                              reference=np.zeros((9, 2)))


def test_plot_regimes_draws_the_smoother_and_the_viterbi_path():
    q, _ = _switches(samples=1, steps=30, k=3)
    regimes = np.repeat([0, 2, 1], 10)
    path = np.repeat([1, 0, 2], 10)
    fig = plotting.plot_regimes(np.arange(30.0), regimes, q[0],
                                smoothed=q[0][::-1], viterbi=path,
                                regime_name="NBER")
    # Input, regimes, q, smoothed, Viterbi, and the colour bar.
    assert len(fig.axes) == 6
    assert fig.axes[1].get_ylabel() == "NBER"
    assert fig.axes[3].get_ylabel() == "smoothed"
    np.testing.assert_allclose(
        np.asarray(fig.axes[3].images[0].get_array()), q[0][::-1].T)
    np.testing.assert_array_equal(
        np.asarray(fig.axes[4].images[0].get_array()).argmax(0), path)
    with pytest.raises(ValueError, match="`viterbi` must be 30 integers"):
        plotting.plot_regimes(np.arange(30.0), regimes, q[0],
                              viterbi=np.full(30, 3))
    with pytest.raises(ValueError, match="`smoothed` must have 30 steps"):
        plotting.plot_regimes(np.arange(30.0), regimes, q[0],
                              smoothed=np.zeros((30, 2)))


def test_plot_forecast_draws_the_fan_and_the_regimes():
    import keras_mrnn

    x, _ = keras_mrnn.datasets.MarkovSwitchingAR().sample(4, 60, seed=0)
    layer = keras_mrnn.MarkovLSTM(4, num_states=3, switch="hmm")
    layer.adapt(x, restarts=1, max_iter=5, seed=0)
    result = layer.forecast(x[:2], horizon=6, num_samples=200,
                            quantiles=(0.05, 0.25, 0.5, 0.75, 0.95), seed=0)
    fig = keras_mrnn.plotting.plot_forecast(x, result, sequence=1, last=20)
    top, bottom = fig.axes
    # The history's last 20 values, then the median over the horizon.
    lines = top.get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), x[1, -20:, 0])
    np.testing.assert_allclose(lines[1].get_ydata(),
                               result.quantiles[2, 1, :, 0])
    assert len(top.collections) == 2          # The 90 % and 50 % bands.
    assert len(bottom.collections) == 3       # One area per regime.
    with pytest.raises(ValueError, match="times"):
        keras_mrnn.plotting.plot_forecast(x[1], result, times=[1, 2])
