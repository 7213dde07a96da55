"""Milliseconds per training step of MarkovLSTM against Keras's own LSTM.

Measures, in one process, forward + backward + Adam update of a model
`recurrent layer -> Dense(10)` with sparse categorical cross-entropy, for:

- `keras.layers.LSTM(128)`, the reference of every ratio;
- `keras_mrnn.MarkovLSTM(128, num_states=4)`;
- a naive Markov LSTM: 4 separate `keras.layers.LSTMCell`s and a Dense
  switch in one cell, the obvious implementation;
- `keras.layers.LSTM(512)`, the same matmul width as 4 LSTMs of 128.

Settings: batch 150 with 28 steps of 28 features (sequential MNIST) and
with 500 steps; each with and without `jit_compile`. Each configuration is
warmed up, then timed over several repeats of a few steps; the table shows
medians and ratios to `LSTM(128)` of the same setting and jit mode.

    python benchmarks/markov_lstm_speed.py            # full table
    python benchmarks/markov_lstm_speed.py --quick    # seconds, smoke test
    python benchmarks/markov_lstm_speed.py --switches --lengths 28 --jit off
        # each switch against LSTM(128), and the time of MarkovLSTM.adapt

Runs unchanged on a GPU (the device is printed first).
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

import keras_mrnn  # noqa: E402


class NaiveMarkovLSTMCell(keras.layers.Layer):
    """K separate LSTMCells and a Dense switch: the obvious implementation."""

    def __init__(self, units, num_states, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_states = num_states
        self.cells = [keras.layers.LSTMCell(units) for _ in range(num_states)]
        self.switch = keras.layers.Dense(num_states)
        self.seed_generator = keras.random.SeedGenerator(0)
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        for cell in self.cells:
            cell.build(input_shape)
        self.switch.build((input_shape[0], input_shape[-1] + self.units))

    def call(self, inputs, states, training=False):
        h, c = states
        logits = self.switch(ops.concatenate([inputs, h], axis=-1))
        z = keras_mrnn.gumbel.gumbel_softmax(
            logits, 1.0, seed=self.seed_generator)
        hs, cs = [], []
        for cell in self.cells:
            _, (h_k, c_k) = cell(inputs, [h, c])
            hs.append(h_k)
            cs.append(c_k)
        weights = ops.expand_dims(z, -1)
        h = ops.sum(weights * ops.stack(hs, axis=1), axis=1)
        c = ops.sum(weights * ops.stack(cs, axis=1), axis=1)
        return h, [h, c]


MODELS = {
    "LSTM(128)": lambda: keras.layers.LSTM(128),
    "MarkovLSTM(128, K=4)": lambda: keras_mrnn.MarkovLSTM(
        128, num_states=4, seed=0),
    "naive 4 x LSTMCell(128)": lambda: keras.layers.RNN(
        NaiveMarkovLSTMCell(128, 4)),
    "LSTM(512)": lambda: keras.layers.LSTM(512),
}
DEFAULT_MODELS = list(MODELS)
# One per switch (`--switches`): the cost of each against LSTM(128).
SWITCH_MODELS = {
    "MarkovLSTM(128, K=4, switch='predictive')": lambda: (
        keras_mrnn.MarkovLSTM(128, num_states=4, seed=0,
                              switch="predictive")),
    "MarkovLSTM(128, K=4, switch='hmm')": lambda: keras_mrnn.MarkovLSTM(
        128, num_states=4, seed=0, switch="hmm"),
    "MarkovLSTM(128, K=4, HMMSwitch(order=0, covariance='full'))": lambda: (
        keras_mrnn.MarkovLSTM(
            128, num_states=4, seed=0,
            switch=keras_mrnn.switches.HMMSwitch(order=0,
                                                 covariance="full"))),
}
MODELS.update(SWITCH_MODELS)


def device_name():
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    return (f"CPU: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores")


def time_training(model, x, y, repeats, steps_per_repeat):
    """Median milliseconds of one compiled training step of `model`.

    Runs Keras's own compiled train function on the same batch (a repeated
    `tf.data` element), after three warm-up steps that trace and compile.
    """
    data = (x,) if y is None else (x, y)
    iterator = iter(tf.data.Dataset.from_tensors(data).repeat())
    model.make_train_function()
    train_function = model.train_function
    for _ in range(3):  # trace, compile and warm up
        logs = train_function(iterator)
    float(logs["loss"])
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps_per_repeat):
            logs = train_function(iterator)
        float(logs["loss"])  # wait for the device
        timings.append((time.perf_counter() - start) / steps_per_repeat)
    return 1000 * statistics.median(timings)


def time_recurrent_matmuls(batch, units, width, steps, repeats):
    """Median milliseconds per time step of the three recurrent matmuls of a
    training step, run in a `tf.while_loop` of `steps` steps: forward
    `h @ W` `(batch, units) @ (units, width)`, the state gradient
    `dz @ W^T` and the weight gradient `h^T @ dz`. A floor under the cost of
    any implementation that runs them per step with TensorFlow's kernels.
    """
    rng = np.random.default_rng(0)
    h = tf.constant(rng.normal(size=(batch, units)).astype("float32"))
    w = tf.constant(rng.normal(size=(units, width)).astype("float32") * 0.01)
    dz = tf.constant(rng.normal(size=(batch, width)).astype("float32"))

    @tf.function
    def loop(h, w, dz):
        def body(i, h, grad_w):
            z = tf.matmul(h, w)
            dh = tf.matmul(dz, w, transpose_b=True)
            grad_w += tf.matmul(h, dz, transpose_a=True)
            # Feed the results back so that no matmul can be skipped.
            return i + 1, h + 1e-6 * (dh + z[:, :units]), grad_w
        return tf.while_loop(
            lambda i, *_: i < steps, body, (0, h, tf.zeros_like(w)))[1:]

    [t.numpy() for t in loop(h, w, dz)]  # trace and warm up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        [t.numpy() for t in loop(h, w, dz)]
        timings.append((time.perf_counter() - start) / steps)
    return 1000 * statistics.median(timings)


def time_adapt(switch, num_sequences, steps, features, restarts):
    """Seconds of `MarkovLSTM.adapt` on sequences of a 3-regime process
    (features beyond the first are independent copies)."""
    process = keras_mrnn.datasets.MarkovSwitchingAR()
    x = np.concatenate([
        process.sample(num_sequences, steps, seed=f)[0]
        for f in range(features)], axis=-1)
    layer = keras_mrnn.MarkovLSTM(8, num_states=3, switch=switch)
    start = time.perf_counter()
    layer.adapt(x, restarts=restarts, seed=0)
    return time.perf_counter() - start


def time_train_step(make_layer, batch, steps, features, jit_compile,
                    repeats, steps_per_repeat):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    y = rng.integers(0, 10, size=(batch,))
    model = keras.Sequential([
        keras.Input((steps, features)), make_layer(), keras.layers.Dense(10)])
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return time_training(model, x, y, repeats, steps_per_repeat)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny run (seconds) to check the script works")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS,
                        choices=list(MODELS))
    parser.add_argument("--switches", action="store_true",
                        help="time LSTM(128) and MarkovLSTM with each switch "
                             "instead, and MarkovLSTM.adapt")
    parser.add_argument("--lengths", nargs="*", type=int, default=[28, 500])
    parser.add_argument("--jit", nargs="*", default=["off", "on"],
                        choices=["off", "on"])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    batch, features = 150, 28
    lengths, repeats = args.lengths, args.repeats
    if args.switches:
        args.models = ["LSTM(128)", "MarkovLSTM(128, K=4)", *SWITCH_MODELS]
    if args.quick:
        batch, lengths, repeats = 8, [5], 2

    print(f"Device: {device_name()}; TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}")
    results = []
    for length in lengths:
        for jit in args.jit:
            steps_per_repeat = 5 if length <= 100 else 2
            if args.quick:
                steps_per_repeat = 1
            row_ms = {}
            for name in args.models:
                ms = time_train_step(
                    MODELS[name], batch, length, features, jit == "on",
                    repeats, steps_per_repeat)
                row_ms[name] = ms
                print(f"  T={length:<4d} jit={jit:<3s} {name:<24s} "
                      f"{ms:9.2f} ms/step", flush=True)
            base = row_ms.get("LSTM(128)")
            for name, ms in row_ms.items():
                results.append({
                    "steps": length, "jit_compile": jit == "on",
                    "model": name, "ms_per_step": ms,
                    "ratio_to_lstm128": ms / base if base else None,
                })

    print(f"\nbatch {batch}, {features} features; median of {repeats} "
          "repeats; ratio = time / time of LSTM(128) in the same setting")
    print(f"| steps | jit_compile | model | ms / train step | "
          f"x LSTM(128) |")
    print("|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['ratio_to_lstm128']:.2f}" if r["ratio_to_lstm128"] else "-"
        print(f"| {r['steps']} | {'on' if r['jit_compile'] else 'off'} | "
              f"{r['model']} | {r['ms_per_step']:.2f} | {ratio} |")
    markov = "MarkovLSTM(128, K=4)"
    naive = "naive 4 x LSTMCell(128)"
    for r in results:
        if r["model"] == markov:
            other = [o for o in results if o["model"] == naive
                     and o["steps"] == r["steps"]
                     and o["jit_compile"] == r["jit_compile"]]
            if other:
                print(f"T={r['steps']} jit={'on' if r['jit_compile'] else 'off'}:"
                      f" MarkovLSTM / naive = "
                      f"{r['ms_per_step'] / other[0]['ms_per_step']:.2f}")

    # What the recurrent matmuls alone cost, to read the ratios against.
    print("\nRecurrent matmuls of a training step alone (forward, state "
          "gradient, weight gradient), per time step:")
    matmuls = {}
    for name, width in (("LSTM(128)", 4 * 128), ("MarkovLSTM(128, K=4)",
                                                  4 * 4 * 128),
                        ("LSTM(512)", 4 * 512)):
        units = 512 if name == "LSTM(512)" else 128
        matmuls[name] = time_recurrent_matmuls(
            batch, units, width, max(lengths), repeats)
        print(f"  {name:<24s} {matmuls[name]:7.3f} ms per step "
              f"(x {min(lengths)} steps = "
              f"{matmuls[name] * min(lengths):.1f} ms)")
    adapt = {}
    if args.switches:
        print("\nMarkovLSTM(num_states=3).adapt (seconds):")
        size = (20, 30) if args.quick else (2000, 100)
        restarts = 2 if args.quick else 10
        for label, switch, features in (
            ("HMMSwitch(), 1 feature", "hmm", 1),
            ("HMMSwitch(order=0, covariance='full'), 2 features",
             keras_mrnn.switches.HMMSwitch(order=0, covariance="full"), 2),
        ):
            adapt[label] = time_adapt(switch, *size, features, restarts)
            print(f"  {size[0]} sequences of {size[1]} steps, {restarts} "
                  f"restarts, {label}: {adapt[label]:.1f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name(), "batch": batch,
                       "results": results,
                       "recurrent_matmuls_ms_per_step": matmuls,
                       "adapt_seconds": adapt}, f, indent=2)


if __name__ == "__main__":
    main()
