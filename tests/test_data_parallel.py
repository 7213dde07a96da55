"""Data-parallel training on JAX with Keras's own
`keras.distribution.DataParallel`, on two host CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`, set in a new process
before JAX starts): the losses of a stateless and a stateful Markov LSTM
match one device's, as `test_reliability.py`'s `MirroredStrategy` test
checks on TensorFlow. With one seed the two runs draw the same Gumbel noise
for the whole global batch, so equal losses also say that the replicas did
not each repeat one stream (keras#20611 is TensorFlow's side of that trap).

Bound: the same float32 maths, the batch's mean split over two devices:
~1e-7 relative on the loss after two epochs (compared at 1e-5).
"""

import os

import keras
import numpy as np
import pytest

from _helpers import last_json_line, run_python, slow

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "jax",
                       reason="keras.distribution.DataParallel on JAX"),
]

SCRIPT = """
import json, sys
import numpy as np, jax, keras, keras_mrnn
devices = jax.devices()
if len(devices) > 1:
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices))
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 10, 3)).astype("float32")
y = rng.normal(size=(32, 1)).astype("float32")
losses = {}
for stateful in (False, True):
    keras.utils.set_random_seed(0)
    inputs = (keras.Input(batch_shape=(8, 10, 3)) if stateful
              else keras.Input((10, 3)))
    h = keras_mrnn.MarkovLSTM(8, num_states=2, seed=1,
                              stateful=stateful)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False,
                        verbose=0)
    losses["stateful" if stateful else "stateless"] = history.history["loss"]
    # The weights live on every device (replicated by DataParallel).
    placed = len(model.weights[0].value.sharding.device_set)
print(json.dumps({"devices": len(devices), "losses": losses,
                  "placed": placed}))
"""


def run(devices):
    # Added to the suite's own XLA flags (conftest.py): both runs compile
    # alike but for the device count.
    flags = {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "") +
             " --xla_force_host_platform_device_count=2"} \
        if devices == 2 else {}
    result = run_python("-c", SCRIPT,
                        env={"KERAS_BACKEND": "jax", **flags})
    return last_json_line(result.stdout)


@slow
def test_data_parallel_on_two_devices_matches_one_device():
    one, two = run(1), run(2)
    assert one["devices"] == 1 and two["devices"] == 2
    assert one["placed"] == 1 and two["placed"] == 2
    for kind in ("stateless", "stateful"):
        np.testing.assert_allclose(two["losses"][kind], one["losses"][kind],
                                   rtol=1e-5)
        # Training moved: the second epoch's loss is not the first's.
        assert one["losses"][kind][1] < one["losses"][kind][0]
