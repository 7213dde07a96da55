"""Saves one small model per switch, and its predictions, as test data for
loading files saved by older versions (tests/test_switches.py). Run from
the repository root at the commit named in the file names (7030b5f).
"""
import subprocess, numpy as np, keras, keras_mrnn
commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
rng = np.random.default_rng(0)
x = rng.normal(size=(4, 7, 3)).astype("float32")
arrays = {"x": x}
for switch, extra in [("linear", {}), ("linear_markov", {"markov_transition": True}),
                      ("predictive", {}), ("hmm", {})]:
    name = switch.split("_")[0]
    inputs = keras.Input((None, 3))
    layer = keras_mrnn.MarkovLSTM(5, num_states=3, switch=name, return_sequences=True,
                                  return_switches=True, seed=3, **extra)
    h, q, z = layer(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2)(h), q])
    # Move the weights off their initial values, so loading is really tested.
    for w in model.weights:
        w.assign(w.numpy() + 0.1 * rng.normal(size=w.shape).astype("float32"))
    y, q = model.predict(x, verbose=0)
    model.save(f"tests/data/markov_lstm_{switch}_{commit}.keras")
    arrays[f"{switch}_y"] = y
    arrays[f"{switch}_q"] = q
np.savez(f"tests/data/markov_lstm_predictions_{commit}.npz", **arrays)
print(commit, {k: v.shape for k, v in arrays.items()})
