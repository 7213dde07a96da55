"""Runs the benchmark scripts at toy size, so that they keep working.

Timings are never asserted (see the README's Speed section): only that the
scripts run and report finite, positive figures.
"""

import ast
import importlib.util
import json
import math
import os

import pytest
from _helpers import BACKEND, ROOT, run_python, slow, tensorflow_only


def run(script, *args):
    return run_python(os.path.join(ROOT, "benchmarks", script), *args,
                      timeout=600).stdout


SPEED_MODELS = {"LSTM(128)", "MarkovLSTM(128, K=4)",
                "naive 4 x LSTMCell(128)", "LSTM(512)"}


# The speed script takes its backend from --backend: the TensorFlow run of
# the suite times TensorFlow, the JAX and PyTorch runs their own.
@slow
@tensorflow_only("times TensorFlow (--backend tensorflow); the JAX and "
                 "PyTorch runs time theirs: "
                 "test_markov_lstm_speed_quick_on_backend")
def test_markov_lstm_speed_quick(tmp_path):
    path = tmp_path / "speed.json"
    out = run("markov_lstm_speed.py", "--quick", "--backend", "tensorflow",
              "--jit", "off", "--json", str(path))
    assert "Device:" in out and "MarkovLSTM / naive" in out
    report = json.loads(path.read_text())
    assert report["backend"] == "tensorflow"
    models = {r["model"] for r in report["results"]}
    assert models == SPEED_MODELS
    figures = [r["ms_per_step"] for r in report["results"]]
    figures += list(report["recurrent_matmuls_ms_per_step"].values())
    assert len(report["recurrent_matmuls_ms_per_step"]) == 3
    assert all(math.isfinite(v) and v > 0 for v in figures)


# The backend's library, and the one jit mode the script measures there.
OTHER_BACKENDS = {"jax": ("jax", "on"), "torch": ("torch", "off")}


@slow
@pytest.mark.parametrize("backend", sorted(OTHER_BACKENDS))
def test_markov_lstm_speed_quick_on_backend(tmp_path, backend):
    module, jit = OTHER_BACKENDS[backend]
    if BACKEND != backend:
        pytest.skip(f"timed in the {backend} run of the suite")
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    path = tmp_path / "speed.json"
    out = run("markov_lstm_speed.py", "--quick", "--backend", backend,
              "--json", str(path))
    assert "Device:" in out and f"backend {backend}" in out
    assert "MarkovLSTM / naive" in out
    # The TF-only matmul floor and the jit mode the backend lacks are
    # skipped with a note, not an error.
    assert "skipped" in out
    report = json.loads(path.read_text())
    assert report["backend"] == backend and report["jit_modes"] == [jit]
    assert {r["model"] for r in report["results"]} == SPEED_MODELS
    for r in report["results"]:
        assert r["backend"] == backend
        assert r["jit_compile"] == (jit == "on")
        assert math.isfinite(r["ms_per_step"]) and r["ms_per_step"] > 0
        assert math.isfinite(r["ratio_to_lstm128"])
        assert r["ratio_to_lstm128"] > 0
    assert report["recurrent_matmuls_ms_per_step"] == {}


@pytest.mark.parametrize("args, env", [
    (["--backend", "numpy"], {}),
    ([], {"KERAS_BACKEND": "numpy"}),
])
def test_markov_lstm_speed_bad_backend(args, env):
    # argparse refuses it before Keras is imported.
    result = run_python(
        os.path.join(ROOT, "benchmarks", "markov_lstm_speed.py"), "--quick",
        *args, env=env, check=False, timeout=120)
    assert result.returncode == 2
    assert "numpy" in result.stderr and "tensorflow" in result.stderr


@slow
def test_vrnn_speed_quick():
    out = run("vrnn_speed.py", "--quick", "--jit", "off")
    assert "Device:" in out and "VRNN" in out


@slow
@tensorflow_only("times TensorFlow (--backend tensorflow); adapt on every "
                 "backend: test_adapt.py")
def test_switch_speed_and_adapt_time_quick(tmp_path):
    path = tmp_path / "switches.json"
    run("markov_lstm_speed.py", "--quick", "--switches", "--backend",
        "tensorflow", "--jit", "off", "--json", str(path))
    report = json.loads(path.read_text())
    models = {r["model"] for r in report["results"]}
    assert "MarkovLSTM(128, K=4, switch='hmm')" in models
    assert len(models) == 5
    figures = [r["ms_per_step"] for r in report["results"]]
    figures += list(report["adapt_seconds"].values())
    assert len(report["adapt_seconds"]) == 2
    assert all(math.isfinite(v) and v > 0 for v in figures)


@slow
def test_regime_recovery_quick():
    out = run("regime_recovery.py", "--quick")
    results = json.loads(out.strip().splitlines()[-1])
    assert set(results) == {
        "level", "volatility", "three regimes (the regime example's)",
        "correlated (2 features)", "GNP (NBER recessions)"}
    assert all(0 <= v <= 1 for figures in results.values()
               for v in figures.values())


@pytest.mark.parametrize("script", [
    "markov_lstm_speed.py", "regime_recovery.py", "vrnn_speed.py"])
def test_help_describes_every_flag(script):
    path = os.path.join(ROOT, "benchmarks", script)
    out = run_python(path, "--help", timeout=120).stdout
    # The whole docstring, not its first line (cut mid-sentence in one).
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    for line in (doc.splitlines()[0], doc.strip().splitlines()[-1]):
        assert line.strip() in out
    # Each option has a help text: on its line, or on the next, indented.
    options = out.split("options:\n", 1)[1].splitlines()
    for i, line in enumerate(options):
        if line.startswith("  -"):
            following = options[i + 1] if i + 1 < len(options) else ""
            assert "  " in line.strip() or (
                following.startswith(" " * 8)
                and not following.lstrip().startswith("-")), line
