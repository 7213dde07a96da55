"""Saves one small model per switch configuration, and its predictions, as
test data for loading files saved by older versions (tests/test_switches.py).
Run from the repository root at the commit named in the file names:

- 7030b5f (before switches were components): the first four of CONFIGS,
  with the switch given as a string;
- 83a3967 (before the regime model got one home, issue 22): all of CONFIGS,
  each switch given as an object.
"""
import subprocess

import keras
import numpy as np

import keras_mrnn
from keras_mrnn.switches import HMMSwitch, LinearSwitch, PredictiveSwitch

CONFIGS = {
    "linear": lambda: LinearSwitch(),
    "linear_markov": lambda: LinearSwitch(markov_transition=True),
    "predictive": lambda: PredictiveSwitch(),
    "hmm": lambda: HMMSwitch(),
    "predictive_markov": lambda: PredictiveSwitch(markov_transition=True),
    "hmm_order0_full": lambda: HMMSwitch(order=0, covariance="full"),
    "hmm_order2_shared_ar": lambda: HMMSwitch(order=2, switching_ar=False),
    "hmm_order2_full": lambda: HMMSwitch(order=2, covariance="full",
                                         task_gradient=False),
    "hmm_shared_scale": lambda: HMMSwitch(switching_scale=False),
}

commit = subprocess.check_output(
    ["git", "rev-parse", "--short", "HEAD"], text=True).strip()
rng = np.random.default_rng(0)
x = rng.normal(size=(4, 7, 3)).astype("float32")
arrays = {"x": x}
for name, make_switch in CONFIGS.items():
    inputs = keras.Input((None, 3))
    layer = keras_mrnn.MarkovLSTM(5, num_states=3, switch=make_switch(),
                                  return_sequences=True, return_switches=True,
                                  seed=3)
    h, q, z = layer(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2)(h), q])
    # Move the weights off their initial values, so loading is really tested.
    for w in model.weights:
        w.assign(keras.ops.convert_to_numpy(w)
                 + 0.1 * rng.normal(size=w.shape).astype("float32"))
    y, q = model.predict(x, verbose=0)
    model.save(f"tests/data/markov_lstm_{name}_{commit}.keras")
    arrays[f"{name}_y"] = y
    arrays[f"{name}_q"] = q
np.savez(f"tests/data/markov_lstm_predictions_{commit}.npz", **arrays)
print(commit, {k: v.shape for k, v in arrays.items()})
