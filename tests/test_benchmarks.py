"""Runs the benchmark scripts at toy size, so that they keep working.

Timings are never asserted (see the README's Speed section): only that the
scripts run and report finite, positive figures.
"""

import json
import math
import os

from _helpers import ROOT, run_python


def run(script, *args):
    return run_python(os.path.join(ROOT, "benchmarks", script), *args,
                      timeout=600).stdout


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
