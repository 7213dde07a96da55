"""Trains the package's layers on one device and under MirroredStrategy over
2 logical CPU devices, and prints the per-epoch losses as JSON.

Run as a script (by tests/test_reliability.py, in a subprocess): the logical
devices must be configured before TensorFlow initializes. With the argument
`stateful_evaluation` it checks `callbacks.StatefulEvaluation` instead (for
tests/test_callbacks.py).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mrnn  # noqa: E402

N, T, F, GLOBAL_BATCH, EPOCHS = 32, 6, 3, 16, 2


def build(kind, batch_size=None):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((T, F), batch_size=batch_size)
    stateful = batch_size is not None
    if kind == "vrnn":
        outputs = keras_mrnn.VRNN(8, latent_dim=2, seed=2)(inputs)
        model = keras.Model(inputs, outputs)
        model.compile(keras.optimizers.SGD(0.05))
        return model
    # A high temperature makes the soft Gumbel-softmax switch nearly
    # uniform, so the different noise draws of 1 and 2 replicas barely
    # matter (hard straight-through draws would).
    h = keras_mrnn.MarkovLSTM(
        8, num_states=3, temperature=100.0, straight_through=False, seed=2,
        stateful=stateful,
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, T, F)).astype("float32")
    y = x[:, :, :1].sum(axis=1)
    # One strategy per process: a second MirroredStrategy in the same
    # process can clash on collective instance keys.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    replicas = strategy.num_replicas_in_sync
    results = {"replicas": replicas}
    cases = [
        ("markov", None, None),
        ("vrnn", None, None),
        # Stateful: one device holds GLOBAL_BATCH state rows; under the
        # strategy each replica holds its own GLOBAL_BATCH / 2 rows.
        ("markov_stateful", GLOBAL_BATCH, GLOBAL_BATCH // replicas),
    ]
    for name, single_batch, replica_batch in cases:
        kind = name.split("_")[0]
        targets = None if kind == "vrnn" else y
        single = build(kind, single_batch)
        weights = single.get_weights()
        fit = dict(batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False,
                   verbose=0)
        if single_batch:
            fit["callbacks"] = [keras_mrnn.callbacks.ResetStates()]
        one = single.fit(x, targets, **fit).history["loss"]
        with strategy.scope():
            mirrored = build(kind, replica_batch)
        mirrored.set_weights(weights)
        if single_batch:
            fit["callbacks"] = [keras_mrnn.callbacks.ResetStates()]
        two = mirrored.fit(x, targets, **fit).history["loss"]
        results[name] = {"single": one, "mirrored": two}
    json.dump(results, sys.stdout)


def stateful_evaluation():
    """`StatefulEvaluation` with its default batch size under the strategy:
    fits a stateful Markov LSTM of per-replica state rows for one epoch,
    and prints the callback's `val_loss` (or the error it raised) beside
    the loss of a one-device model with the same weights, evaluated from
    zero states with the global batch."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, T, F)).astype("float32")
    y = x[:, :, :1].sum(axis=1)
    x_val = rng.normal(size=(N, T, F)).astype("float32")
    y_val = x_val[:, :, :1].sum(axis=1)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    replicas = strategy.num_replicas_in_sync
    results = {"replicas": replicas}
    with strategy.scope():
        mirrored = build("markov", GLOBAL_BATCH // replicas)
    try:
        history = mirrored.fit(
            x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False,
            verbose=0, callbacks=[
                keras_mrnn.callbacks.ResetStates(),
                keras_mrnn.callbacks.StatefulEvaluation(x_val, y_val),
            ],
        ).history
        results["val_loss"] = history["val_loss"][0]
    except Exception as error:  # reported to the test, which shows it
        results["error"] = f"{type(error).__name__}: {error}"[:2000]
    single = build("markov", GLOBAL_BATCH)
    single.set_weights(mirrored.get_weights())
    keras_mrnn.reset_states(single)
    results["single_val_loss"] = single.evaluate(
        x_val, y_val, batch_size=GLOBAL_BATCH, verbose=0
    )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    # One case per process (one strategy per process, see `main`).
    if sys.argv[1:] == ["stateful_evaluation"]:
        stateful_evaluation()
    else:
        main()
