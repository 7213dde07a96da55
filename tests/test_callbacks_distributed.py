"""Callbacks under a multi-replica `tf.distribute` strategy (MirroredStrategy
on 2 logical CPUs, in a subprocess: see tests/_mirrored_training.py)."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_stateful_evaluation_default_batch_size_under_mirrored_strategy():
    # Each replica holds its own state rows, and `evaluate` takes a global
    # batch: the default batch size must be rows x replicas, or the
    # stateful batch guard refuses every batch (issue 11, bug 2).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, "_mirrored_training.py"),
         "stateful_evaluation"],
        capture_output=True, text=True, timeout=400, env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["replicas"] == 2
    assert "error" not in results, results["error"]
    # The callback evaluated every sample from zero states: the same loss as
    # one device holding all 16 rows, with the same weights. Only the
    # float32 reduction order differs (mean of 2 replicas' sums over ~16
    # terms): relative 1e-5 is ~100 ulps.
    single = results["single_val_loss"]
    assert abs(results["val_loss"] - single) <= 1e-5 * abs(single), results
