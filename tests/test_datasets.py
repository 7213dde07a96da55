"""Tests of keras_mrnn.datasets (no download: MNIST comes from ../shared)."""

import math
import os

import numpy as np
import pytest

from _helpers import MNIST_NPZ
from keras_mrnn import datasets


# ------------------------------------------------------------ alien_signal
def test_alien_signal_shapes_labels_dtypes():
    x, y = datasets.alien_signal(200, num_steps=30, seed=0)
    assert x.shape == (200, 30, 1) and x.dtype == np.float32
    assert y.shape == (200,) and y.dtype == np.int32
    assert set(np.unique(y)) == {0, 1}
    assert np.all(np.isfinite(x))


def test_alien_signal_seed_reproducibility():
    a = datasets.alien_signal(50, seed=3)
    b = datasets.alien_signal(50, seed=3)
    c = datasets.alien_signal(50, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_alien_signal_plain_class_is_a_sine():
    x, y = datasets.alien_signal(300, num_steps=50, seed=1)
    grid = np.linspace(0.0, 20.0, 50)
    plain = x[y == 0, :, 0]
    # Each plain sequence is sin(p * pi + grid) for one phase p in (-1, 1).
    phase = np.arcsin(np.clip(plain[:, 0], -1, 1))
    for row, start in zip(plain, phase):
        candidates = [start, math.pi - start]
        assert min(
            np.max(np.abs(row - np.sin(c + grid))) for c in candidates
        ) < 1e-4
    # Alien sequences differ from every pure sine: they carry the cosine.
    alien = x[y == 1, :, 0]
    assert np.max(np.abs(alien)) > 1.2


@pytest.mark.parametrize("kwargs, error", [
    ({"num_samples": 0}, ValueError),
    ({"num_samples": 2.5}, TypeError),
    ({"num_samples": 10, "num_steps": -1}, ValueError),
    ({"num_samples": 10, "seed": "a"}, TypeError),
    ({"num_samples": 10, "seed": -1}, ValueError),
    ({"num_samples": 10, "frequency_range": (200, 100)}, ValueError),
    ({"num_samples": 10, "span": 0.0}, ValueError),
])
def test_alien_signal_validation(kwargs, error):
    with pytest.raises(error, match=list(kwargs)[-1]):
        datasets.alien_signal(**kwargs)


# --------------------------------------------------------- stateful_cosine
def test_stateful_cosine_matches_formula():
    x, y = datasets.stateful_cosine(2000)
    assert x.shape == (2000, 1, 1) and y.shape == (2000, 1)
    assert x.dtype == y.dtype == np.float32
    i = np.arange(2001)
    series = 100 * np.cos(i / (2 * np.pi * 25)) * np.exp(-0.0001 * i)
    np.testing.assert_allclose(x[:, 0, 0], series[:2000], rtol=1e-5,
                               atol=1e-4)
    # lahead = 1: the target is the next point.
    np.testing.assert_allclose(y[:, 0], series[1:], rtol=1e-5, atol=1e-4)


def test_stateful_cosine_lahead_mean():
    x, y = datasets.stateful_cosine(100, lahead=4, amplitude=2.0,
                                    period=3.0, decay=0.0)
    i = np.arange(104)
    series = 2.0 * np.cos(i / (2 * np.pi * 3.0))
    expected = [series[k + 1:k + 5].mean() for k in range(100)]
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, error", [
    ({"num_points": 0}, ValueError),
    ({"lahead": 1.5}, TypeError),
    ({"amplitude": -1.0}, ValueError),
    ({"decay": float("nan")}, ValueError),
])
def test_stateful_cosine_validation(kwargs, error):
    with pytest.raises(error, match=list(kwargs)[0]):
        datasets.stateful_cosine(**kwargs)


# --------------------------------------------------------------- load_mnist
def _write_npz(path, n_train=5, n_test=3, **override):
    arrays = {
        "x_train": np.zeros((n_train, 28, 28), "uint8"),
        "y_train": np.arange(n_train, dtype="uint8"),
        "x_test": np.ones((n_test, 28, 28), "uint8"),
        "y_test": np.arange(n_test, dtype="uint8"),
    }
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return str(path)


def test_load_mnist_reads_npz(tmp_path):
    path = _write_npz(tmp_path / "small.npz")
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(path)
    assert x_train.shape == (5, 28, 28) and y_train.shape == (5,)
    assert x_test.shape == (3, 28, 28) and y_test.tolist() == [0, 1, 2]


def test_load_mnist_env_var(tmp_path, monkeypatch):
    path = _write_npz(tmp_path / "env.npz", n_train=7)
    monkeypatch.setenv("MNIST_NPZ", path)
    (x_train, _), _ = datasets.load_mnist()
    assert len(x_train) == 7


def test_load_mnist_argument_beats_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_NPZ", str(tmp_path / "missing.npz"))
    path = _write_npz(tmp_path / "arg.npz", n_train=4)
    (x_train, _), _ = datasets.load_mnist(path)
    assert len(x_train) == 4


def test_load_mnist_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        datasets.load_mnist(tmp_path / "nope.npz")
    monkeypatch.setenv("MNIST_NPZ", str(tmp_path / "env_nope.npz"))
    with pytest.raises(FileNotFoundError, match="MNIST_NPZ"):
        datasets.load_mnist()


def test_load_mnist_bad_files(tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match="Could not read"):
        datasets.load_mnist(text)
    missing = _write_npz(tmp_path / "missing.npz", y_test=None)
    with pytest.raises(ValueError, match="y_test"):
        datasets.load_mnist(missing)
    bad = _write_npz(tmp_path / "bad.npz", y_train=np.zeros(2, "uint8"))
    with pytest.raises(ValueError, match="inconsistent train"):
        datasets.load_mnist(bad)
    with pytest.raises(TypeError, match="path"):
        datasets.load_mnist(42)


@pytest.mark.skipif(not os.path.isfile(MNIST_NPZ),
                    reason="shared MNIST file not present")
def test_load_mnist_shared_file():
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(MNIST_NPZ)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28)
    assert y_train.max() == 9 and y_test.shape == (10000,)


def test_gnp_is_hamiltons_series_with_the_nber_recessions():
    growth, quarters, recession = datasets.load_gnp()
    assert growth.shape == recession.shape == (135,)
    assert quarters[0] == "1951Q2" and quarters[-1] == "1984Q4"
    assert len(set(quarters)) == 135
    # Hamilton's first and last values (statsmodels' rgnp).
    assert growth[0] == pytest.approx(2.59316421)
    assert growth[-1] == pytest.approx(0.14802167)
    # NBER: 26 recession quarters, the first 1953Q3-1954Q2.
    assert recession.sum() == 26
    assert [quarters[i] for i in np.flatnonzero(recession)[:4]] == [
        "1953Q3", "1953Q4", "1954Q1", "1954Q2"]
    assert not recession[quarters.index("1954Q3")]


def test_gnp_matches_statsmodels_copy_of_the_series():
    tests = pytest.importorskip(
        "statsmodels.tsa.regime_switching.tests.test_markov_autoregression")
    growth, _, _ = datasets.load_gnp()
    np.testing.assert_array_equal(growth, tests.rgnp)
    # statsmodels' own recession indicator (`rec`, 27 quarters) counts some
    # peak quarters and not the quarter after: another convention than
    # NBER's from-the-quarter-after-the-peak, which load_gnp follows.
