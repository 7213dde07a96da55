"""Runs the benchmark scripts at toy size, so that they keep working.

Timings are never asserted (see the README's Speed section): only that the
scripts run and report finite, positive figures.
"""

import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    return result.stdout


def test_markov_lstm_speed_quick(tmp_path):
    path = tmp_path / "speed.json"
    out = run("markov_lstm_speed.py", "--quick", "--jit", "off",
              "--json", str(path))
    assert "Device:" in out and "MarkovLSTM / naive" in out
    report = json.loads(path.read_text())
    models = {r["model"] for r in report["results"]}
    assert models == {"LSTM(128)", "MarkovLSTM(128, K=4)",
                      "naive 4 x LSTMCell(128)", "LSTM(512)"}
    figures = [r["ms_per_step"] for r in report["results"]]
    figures += list(report["recurrent_matmuls_ms_per_step"].values())
    assert all(math.isfinite(v) and v > 0 for v in figures)


def test_vrnn_speed_quick():
    out = run("vrnn_speed.py", "--quick", "--jit", "off")
    assert "Device:" in out and "VRNN" in out
