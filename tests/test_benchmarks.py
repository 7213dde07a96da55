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


def test_switch_speed_and_adapt_time_quick(tmp_path):
    path = tmp_path / "switches.json"
    run("markov_lstm_speed.py", "--quick", "--switches", "--jit", "off",
        "--json", str(path))
    report = json.loads(path.read_text())
    models = {r["model"] for r in report["results"]}
    assert "MarkovLSTM(128, K=4, switch='hmm')" in models
    assert len(models) == 5
    figures = [r["ms_per_step"] for r in report["results"]]
    figures += list(report["adapt_seconds"].values())
    assert len(report["adapt_seconds"]) == 2
    assert all(math.isfinite(v) and v > 0 for v in figures)


def test_regime_recovery_quick():
    out = run("regime_recovery.py", "--quick")
    results = json.loads(out.strip().splitlines()[-1])
    assert set(results) == {
        "level", "volatility", "three regimes (the regime example's)",
        "correlated (2 features)", "GNP (NBER recessions)"}
    assert all(0 <= v <= 1 for figures in results.values()
               for v in figures.values())
