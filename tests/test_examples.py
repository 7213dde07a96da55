"""Runs every example with --quick in a subprocess and checks its outputs.

MNIST comes from the shared local file (../shared/data/mnist.npz from the
project root): nothing is downloaded. Each example runs under this run's
backend (it inherits `KERAS_BACKEND`) in tens of seconds on a small CPU,
mostly start-up and compiling; its variants run on TensorFlow, with the
slow tests (`pytest -m slow`, README "Development"), and the
`stateful_cosine.py --cell lstm` variant (plain Keras layers) only with
KERAS_MRNN_ALL_EXAMPLES=1.
"""

import importlib.util
import json
import math
import os

import pytest

from _helpers import (
    BACKEND, MNIST_NPZ, ROOT, run_python, slow, tensorflow_only)

EXAMPLES = os.path.join(ROOT, "examples")
needs_mnist = pytest.mark.skipif(
    not os.path.isfile(MNIST_NPZ), reason=f"{MNIST_NPZ} not present"
)
all_examples = pytest.mark.skipif(
    not os.environ.get("KERAS_MRNN_ALL_EXAMPLES"),
    reason="set KERAS_MRNN_ALL_EXAMPLES=1 to run every --cell variant",
)
# Each example's --quick run is checked on every backend; its variants
# (another --cell, a missing package) on TensorFlow, with the slow tests
# (`-m slow`): they change the model or the data, not how the example talks
# to the backend.
VARIANT = [tensorflow_only(
    "a variant of an example whose --quick run is checked on every "
    "backend (a minute per run on 2 cores)"), slow]


def variant(test):
    for mark in VARIANT:
        test = mark(test)
    return test


def run_example(name, *args, timeout=600, env=None):
    """Runs an example under this run's backend (it inherits
    `KERAS_BACKEND`) and returns its standard output."""
    result = run_python(
        os.path.join(EXAMPLES, name), *args, timeout=timeout,
        env={"MPLBACKEND": "Agg", "MNIST_NPZ": None, **(env or {})},
    )
    if BACKEND != "tensorflow":
        # Off TensorFlow the examples do not import it (Keras would, to
        # seed it and when saving): no start-up log, no seconds spent.
        assert "absl::InitializeLog" not in result.stderr, result.stderr
    return result.stdout


def check_outputs(output_dir, pngs):
    import keras

    import keras_mrnn  # noqa: F401  (registers the layers for loading)

    model = keras.saving.load_model(os.path.join(output_dir, "model.keras"))
    assert model.count_params() > 0
    with open(os.path.join(output_dir, "metrics.json")) as f:
        metrics = json.load(f)

    def numbers(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from numbers(v)
        elif isinstance(value, list):
            for v in value:
                yield from numbers(v)
        elif isinstance(value, float):
            yield value

    assert all(math.isfinite(v) for v in numbers(metrics))
    for png in pngs:
        path = os.path.join(output_dir, png)
        assert os.path.getsize(path) > 1000, path
    return metrics


@pytest.mark.parametrize("name", [
    "stateful_cosine.py", "mnist_sequence.py", "alien_signal.py",
    "vrnn_mnist.py", "regime_switching.py", "business_cycle.py",
    "forecasting.py",
])
def test_help(name):
    # Answers without importing TensorFlow, so at once.
    out = run_example(name, "--help", timeout=60)
    for flag in ("--epochs", "--batch-size", "--seed", "--output-dir",
                 "--quick", "--jit-compile", "--mixed-precision"):
        assert flag in out
    assert "(default: " in out


@needs_mnist
def test_mnist_sequence_quick(tmp_path):
    out = run_example("mnist_sequence.py", "--quick", "--data", MNIST_NPZ,
                      "--output-dir", str(tmp_path))
    assert "Device:" in out and "Test accuracy" in out
    metrics = check_outputs(
        tmp_path, ["switches_per_digit.png", "state_usage.png",
                   "history.png"])
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["cell"] == "markov"
    assert set(metrics["state_usage"]) == {str(d) for d in range(10)} | {
        "overall"}
    assert math.isclose(sum(metrics["state_usage"]["overall"]), 1.0)


def lstm_parameters(features, units):
    """Parameters of keras.layers.LSTM(units) on `features` inputs."""
    return 4 * units * (features + units + 1)


@variant
@needs_mnist
def test_mnist_sequence_lstm_baseline_quick(tmp_path):
    out = run_example("mnist_sequence.py", "--quick", "--cell", "lstm",
                      "--data", MNIST_NPZ, "--output-dir", str(tmp_path))
    assert "Test accuracy of the lstm model" in out
    metrics = check_outputs(tmp_path, ["history.png"])
    assert metrics["cell"] == "lstm" and "state_usage" not in metrics
    # --quick: 2 LSTM layers of 16 units on 28 pixels, then Dense(10).
    expected = lstm_parameters(28, 16) + lstm_parameters(16, 16) + 17 * 10
    assert metrics["parameters"] == expected
    assert f"lstm: {expected:,} parameters" in out


def test_alien_signal_quick(tmp_path):
    out = run_example("alien_signal.py", "--quick", "--output-dir",
                      str(tmp_path))
    assert "Device:" in out and "ROC AUC" in out
    metrics = check_outputs(
        tmp_path, ["switches.png", "state_usage.png", "history.png"])
    assert 0.0 <= metrics["test_auc"] <= 1.0
    assert metrics["cell"] == "markov"
    assert set(metrics["state_usage"]) == {"plain", "alien", "overall"}


@variant
def test_alien_signal_lstm_baseline_quick(tmp_path):
    out = run_example("alien_signal.py", "--quick", "--cell", "lstm",
                      "--output-dir", str(tmp_path))
    assert "Held-out test accuracy of the lstm model" in out
    metrics = check_outputs(tmp_path, ["history.png"])
    assert metrics["cell"] == "lstm" and "state_usage" not in metrics
    # --quick: LSTM(16) on 1 feature, then Dense(1).
    assert metrics["parameters"] == lstm_parameters(1, 16) + 17


def test_regime_switching_quick(tmp_path):
    out = run_example("regime_switching.py", "--quick", "--output-dir",
                      str(tmp_path))
    assert "Device:" in out and "Bayes filter" in out
    metrics = check_outputs(tmp_path, ["regimes.png", "history.png"])
    # Both models, and the Bayes ceiling computed on the same test set.
    for name in ("markov", "lstm", "bayes"):
        assert metrics[name]["mse"] > 0.0
    for name in ("markov", "bayes"):
        assert 0.0 <= metrics[name]["nmi"] <= 1.0
    assert metrics["markov"]["parameters"] > metrics["lstm"]["parameters"]
    # --quick: 50 held-out sequences of 40 steps in the confusion counts.
    assert sum(map(sum, metrics["confusion"])) == 50 * 40
    assert os.path.getsize(os.path.join(tmp_path, "lstm.keras")) > 1000


# Run on every backend by .ci/run (the example inherits KERAS_BACKEND): on
# JAX it stacked keras.layers.RNN(MarkovLSTMCell), which refuses to draw
# noise inside JAX's loop.
def test_stateful_cosine_quick(tmp_path):
    import keras

    out = run_example("stateful_cosine.py", "--quick", "--output-dir",
                      str(tmp_path))
    assert "Device:" in out and "MSE of the markov model" in out
    assert ("JAX: keras_mrnn.MarkovLSTM layers" in out) == (
        keras.backend.backend() == "jax")
    metrics = check_outputs(tmp_path, ["predictions.png", "history.png"])
    assert metrics["cell"] == "markov" and metrics["mse"] >= 0.0


@variant
@pytest.mark.parametrize("cell", [
    pytest.param("lstm", marks=all_examples), "vrnn"])
def test_stateful_cosine_other_cells(tmp_path, cell):
    # Also: an explicit flag wins over --quick's smaller default.
    out = run_example("stateful_cosine.py", "--quick", "--cell", cell,
                      "--contiguous-streams", "--epochs", "2",
                      "--output-dir", str(tmp_path))
    assert f"MSE of the {cell} model" in out
    metrics = check_outputs(tmp_path, ["predictions.png", "history.png"])
    assert metrics["args"]["num_points"] == 1000  # from --quick
    assert len(metrics["history"]["loss"]) == 2


@needs_mnist
def test_vrnn_mnist_quick(tmp_path):
    out = run_example("vrnn_mnist.py", "--quick", "--data", MNIST_NPZ,
                      "--output-dir", str(tmp_path))
    assert "Device:" in out and "importance-weighted NLL" in out
    metrics = check_outputs(
        tmp_path, ["samples.png", "reconstructions.png", "history.png"])
    assert metrics["test_negative_elbo_nats_per_image"] > 0.0
    assert metrics["test_iw_nll_nats_per_image"] > 0.0


@pytest.mark.parametrize("name", ["mnist_sequence.py", "vrnn_mnist.py"])
def test_bad_data_path_fails_clearly(tmp_path, name):
    # An argparse error naming the flag and the path, before Keras starts.
    missing = str(tmp_path / "missing.npz")
    result = run_python(
        os.path.join(EXAMPLES, name), "--quick", "--data", missing,
        "--output-dir", str(tmp_path), timeout=60, check=False,
    )
    assert result.returncode == 2
    assert f"error: --data {missing!r}: no such file" in result.stderr
    assert "Traceback" not in result.stderr


# Run on every backend by .ci/run: on PyTorch np.asarray of the model's
# output (a tensor that requires grad) failed.
@pytest.mark.parametrize("statsmodels", [
    "installed", pytest.param("missing", marks=VARIANT),
    pytest.param("failing", marks=VARIANT)])
def test_business_cycle_quick(tmp_path, statsmodels):
    env = None
    shim = tmp_path / "shim" / "statsmodels"
    if statsmodels == "missing":
        # A `statsmodels` package that fails to import, first on the path:
        # the example must run as it does where statsmodels is absent.
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text(
            "raise ImportError('statsmodels is absent in this test')\n")
        env = {"PYTHONPATH": str(tmp_path / "shim")}
    elif statsmodels == "failing":
        # A MarkovAutoregression whose fit raises what statsmodels' own
        # raises from some starts (its optimizer at NaN probabilities): the
        # example leaves the row out, as if statsmodels were absent.
        module = shim / "tsa" / "regime_switching"
        module.mkdir(parents=True)
        for folder in (shim, shim / "tsa", module):
            (folder / "__init__.py").write_text("")
        (module / "markov_autoregression.py").write_text(
            "class MarkovAutoregression:\n"
            "    def __init__(self, *args, **kwargs):\n"
            "        pass\n"
            "    def fit(self, *args, **kwargs):\n"
            "        raise RuntimeError('Steady-state probabilities could "
            "not be constructed.')\n")
        env = {"PYTHONPATH": str(tmp_path / "shim")}
    elif importlib.util.find_spec("statsmodels") is None:
        pytest.skip("statsmodels is not installed")
    output = tmp_path / "out"
    out = run_example("business_cycle.py", "--quick", "--output-dir",
                      str(output), env=env)
    assert "NBER recession quarters" in out and "MarkovLSTM(8, K=2)" in out
    # Keras's progress, as in the other examples (--quick: 3 epochs).
    assert "Epoch 3/3" in out
    assert ("statsmodels MarkovAutoregression" in out) == (
        statsmodels == "installed")
    assert ("failed from every start" in out) == (statsmodels == "failing")
    metrics = check_outputs(output, ["business_cycle.png"])
    for key in ("filtered", "smoothed"):
        assert 0 <= metrics["markov"][key]["accuracy"] <= 1
        assert 0 <= metrics["markov"][key]["auc"] <= 1
    assert metrics["markov"]["forecast_rmse"] > 0
    assert metrics["lstm"]["forecast_rmse"] > 0
    assert ("statsmodels" in metrics) == (statsmodels == "installed")


def test_forecasting_quick(tmp_path):
    # With an LSTM summary (the head alone is tested in
    # test_regime_mixture.py).
    output = tmp_path / "out"
    out = run_example("forecasting.py", "--quick", "--units", "4",
                      "--output-dir", str(output))
    assert "one-step-ahead forecasts of the last 34 steps" in out
    assert "Epoch 3/3" in out
    metrics = check_outputs(output, ["forecast.png"])
    for scores in metrics["scores"].values():
        assert 0 <= scores["coverage"] <= 1 and scores["crps"] > 0
    # The scores are on the series' scale: the training Gaussian's, known.
    assert -1.7 < metrics["scores"]["training Gaussian"]["log_score"] < -1.5
