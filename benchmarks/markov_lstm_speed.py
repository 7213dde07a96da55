"""Milliseconds per training step of MarkovLSTM against Keras's own LSTM.

Measures, in one process and on one Keras backend (`--backend`:
TensorFlow, JAX or PyTorch), forward + backward + Adam update of a model
`recurrent layer -> Dense(10)` with sparse categorical cross-entropy, for:

- `keras.layers.LSTM(128)`, the reference of every ratio;
- `keras_mrnn.MarkovLSTM(128, num_states=4)`;
- a naive Markov LSTM: 4 separate `keras.layers.LSTMCell`s and a Dense
  switch in one cell, the obvious implementation (its Gumbel noise drawn
  before the loop, as JAX needs);
- `keras.layers.LSTM(512)`, the same matmul width as 4 LSTMs of 128.

Settings: batch 150 with 28 steps of 28 features (sequential MNIST) and
with 500 steps; each in the jit modes the backend has: without and with
`jit_compile` on TensorFlow, jitted only on JAX (Keras's JAX trainer
without jit runs op by op), eager only on PyTorch (its `jit_compile`,
torch.compile, recompiles Keras's RNN loop with graph breaks). Each
configuration is warmed up, then timed with `model.train_on_batch` over
several repeats of a few steps, the same on every backend; the table shows
medians and ratios to `LSTM(128)` of the same backend, length and jit mode.

    python benchmarks/markov_lstm_speed.py            # full table
    python benchmarks/markov_lstm_speed.py --quick    # seconds, smoke test
    python benchmarks/markov_lstm_speed.py --backend jax --lengths 28
    python benchmarks/markov_lstm_speed.py --switches --lengths 28 --jit off
        # each switch against LSTM(128), and the time of MarkovLSTM.adapt

Runs unchanged on a GPU (the device and the backend's version are printed
first).
"""

import json
import math
import os
import statistics
import sys
import time

# The --help layout and the device look-up the examples use
# (examples/_common.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "examples"))
import _common  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
# The jit modes measured on each backend, and why the others are not.
JIT_MODES = {"tensorflow": ("off", "on"), "jax": ("on",), "torch": ("off",)}
JIT_SKIPPED = {
    "jax": "jit off skipped on JAX: Keras's JAX trainer then runs the step "
           "eagerly, op by op, which is not how JAX is used (seconds per "
           "step)",
    "torch": "jit on skipped on PyTorch: Keras's jit_compile=True is "
             "torch.compile (dynamo), which compiles Keras's RNN loop for "
             "minutes, with graph breaks, and runs it slower than eager",
}
DEFAULT_MODELS = ["LSTM(128)", "MarkovLSTM(128, K=4)",
                  "naive 4 x LSTMCell(128)", "LSTM(512)"]
# One per switch (`--switches`): the cost of each against LSTM(128).
SWITCH_MODELS = [
    "MarkovLSTM(128, K=4, switch='predictive')",
    "MarkovLSTM(128, K=4, switch='hmm')",
    "MarkovLSTM(128, K=4, HMMSwitch(order=0, covariance='full'))",
]


def parse_args(argv=None):
    parser = _common.argument_parser(__doc__)
    default_backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    parser.add_argument("--backend", choices=BACKENDS, default=default_backend,
                        help="Keras backend: $KERAS_BACKEND when set, else "
                             "tensorflow.")
    parser.add_argument("--quick", action="store_true",
                        help="Tiny run (seconds) to check that the script "
                             "works: batch 8, sequences of 5 steps, 2 "
                             "repeats of one training step (--switches: "
                             "adapt on 20 sequences of 30 steps, 2 "
                             "restarts).")
    parser.add_argument("--repeats", type=int, default=5,
                        help="Timed repeats of each configuration; the "
                             "table shows their median.")
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS,
                        choices=DEFAULT_MODELS + SWITCH_MODELS,
                        metavar="MODEL",
                        help="Models to time, by their names in the table: "
                             + "; ".join(DEFAULT_MODELS + SWITCH_MODELS)
                             + ".")
    parser.add_argument("--switches", action="store_true",
                        help="Time LSTM(128), MarkovLSTM(128, K=4) and "
                             "MarkovLSTM with each other switch instead of "
                             "--models, and MarkovLSTM.adapt.")
    parser.add_argument("--lengths", nargs="*", type=int, default=[28, 500],
                        help="Sequence lengths (time steps) to time.")
    parser.add_argument("--jit", nargs="*", choices=["off", "on"],
                        help="jit_compile modes to time (default: those of "
                             "the backend, see above).")
    parser.add_argument("--json", help="Also write the results to this file.")
    args = parser.parse_args(argv)
    # argparse checks choices on given values only, not on the default.
    if args.backend not in BACKENDS:
        parser.error(f"KERAS_BACKEND={args.backend!r} is not one of "
                     f"{', '.join(BACKENDS)}; pass --backend")
    return args


if __name__ == "__main__":
    # Keras reads the backend once, when it is first imported.
    ARGS = parse_args()
    os.environ["KERAS_BACKEND"] = ARGS.backend

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_mrnn  # noqa: E402

BACKEND = keras.backend.backend()


class NaiveMarkovLSTMCell(keras.layers.Layer):
    """K separate LSTMCells and a Dense switch: the obvious implementation.

    Reads the step's Gumbel noise as its last `num_states` input features
    (see `NaiveMarkovLSTM`).
    """

    def __init__(self, units, num_states, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_states = num_states
        self.cells = [keras.layers.LSTMCell(units) for _ in range(num_states)]
        self.switch = keras.layers.Dense(num_states)
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        features = input_shape[-1] - self.num_states
        for cell in self.cells:
            cell.build((input_shape[0], features))
        self.switch.build((input_shape[0], features + self.units))

    def call(self, inputs, states, training=False):
        inputs, noise = (inputs[:, :-self.num_states],
                         inputs[:, -self.num_states:])
        h, c = states
        logits = self.switch(ops.concatenate([inputs, h], axis=-1))
        z = keras_mrnn.gumbel.gumbel_softmax(logits, 1.0, noise=noise)
        hs, cs = [], []
        for cell in self.cells:
            _, (h_k, c_k) = cell(inputs, [h, c])
            hs.append(h_k)
            cs.append(c_k)
        weights = ops.expand_dims(z, -1)
        h = ops.sum(weights * ops.stack(hs, axis=1), axis=1)
        c = ops.sum(weights * ops.stack(cs, axis=1), axis=1)
        return h, [h, c]


class NaiveMarkovLSTM(keras.layers.Layer):
    """`keras.layers.RNN` of a `NaiveMarkovLSTMCell`.

    The Gumbel noise of all steps is drawn before the loop and read as
    inputs: inside JAX's `lax.scan` a seed generator cannot advance (what
    MarkovLSTM does on JAX too). The same on every backend, so that the
    naive model is one model everywhere.
    """

    def __init__(self, units, num_states, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_states = num_states
        self.rnn = keras.layers.RNN(NaiveMarkovLSTMCell(units, num_states))
        self.seed_generator = keras.random.SeedGenerator(0)

    def build(self, input_shape):
        self.rnn.build((*input_shape[:-1], input_shape[-1] + self.num_states))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def call(self, inputs):
        shape = ops.shape(inputs)
        noise = keras_mrnn.gumbel.sample_gumbel(
            (shape[0], shape[1], self.num_states), seed=self.seed_generator,
            dtype=inputs.dtype)
        return self.rnn(ops.concatenate([inputs, noise], axis=-1))


MODELS = {
    "LSTM(128)": lambda: keras.layers.LSTM(128),
    "MarkovLSTM(128, K=4)": lambda: keras_mrnn.MarkovLSTM(
        128, num_states=4, seed=0),
    "naive 4 x LSTMCell(128)": lambda: NaiveMarkovLSTM(128, 4),
    "LSTM(512)": lambda: keras.layers.LSTM(512),
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
assert set(MODELS) == set(DEFAULT_MODELS + SWITCH_MODELS)


def device_name():
    """The device Keras's backend computes on: its first GPU, else the CPU."""
    gpus = _common.gpu_names(BACKEND)
    return f"GPU: {gpus[0]}" if gpus else f"CPU: {_common.cpu_name()}"


def backend_version():
    """`"TensorFlow 2.x"`, `"JAX 0.x"` or `"PyTorch 2.x"`."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return f"TensorFlow {tf.__version__}"
    if BACKEND == "jax":
        import jax

        return f"JAX {jax.__version__}"
    if BACKEND == "torch":
        import torch

        return f"PyTorch {torch.__version__}"
    return BACKEND


def time_training(model, x, y, repeats, steps_per_repeat):
    """Median milliseconds of one compiled training step of `model`
    (TensorFlow only; vrnn_speed.py's timer).

    Runs Keras's own compiled train function on the same batch (a repeated
    `tf.data` element), after three warm-up steps that trace and compile.
    """
    import tensorflow as tf

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


def time_train_on_batch(model, x, y, repeats, steps_per_repeat):
    """Median milliseconds of one training step of `model`, on any backend.

    `model.train_on_batch` on the same batch (a tensor on the device, so
    that no step copies it there), after three warm-up steps that trace
    and compile. Each call returns the loss as a Python float, so each
    step has finished on the device before the next starts.
    """
    x = ops.convert_to_tensor(x)
    y = None if y is None else ops.convert_to_tensor(y)
    for _ in range(3):  # trace, compile and warm up
        model.train_on_batch(x, y)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps_per_repeat):
            loss = model.train_on_batch(x, y, return_dict=True)["loss"]
        timings.append((time.perf_counter() - start) / steps_per_repeat)
    if not math.isfinite(float(loss)):
        raise FloatingPointError(f"{model.layers[0].name}: loss {loss}")
    return 1000 * statistics.median(timings)


def time_recurrent_matmuls(batch, units, width, steps, repeats):
    """Median milliseconds per time step of the three recurrent matmuls of a
    training step, run in a `tf.while_loop` of `steps` steps: forward
    `h @ W` `(batch, units) @ (units, width)`, the state gradient
    `dz @ W^T` and the weight gradient `h^T @ dz`. A floor under the cost of
    any implementation that runs them per step with TensorFlow's kernels
    (TensorFlow only).
    """
    import tensorflow as tf

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
    y = rng.integers(0, 10, size=(batch,)).astype("int32")
    model = keras.Sequential([
        keras.Input((steps, features)), make_layer(), keras.layers.Dense(10)])
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return time_train_on_batch(model, x, y, repeats, steps_per_repeat)


def skip_note(what, error):
    """Prints and returns why `what` was skipped on this backend."""
    reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    print(f"  skipped on {BACKEND}: {what} ({reason})", flush=True)
    return reason


def main(args):
    batch, features = 150, 28
    lengths, repeats = args.lengths, args.repeats
    if args.switches:
        args.models = ["LSTM(128)", "MarkovLSTM(128, K=4)", *SWITCH_MODELS]
    if args.quick:
        batch, lengths, repeats = 8, [5], 2
    supported = JIT_MODES[BACKEND]
    jit_modes = [j for j in (args.jit or supported) if j in supported]
    notes = []
    print(f"Device: {device_name()}; backend {BACKEND} "
          f"({backend_version()}), Keras {keras.__version__}")
    if any(j not in supported for j in (args.jit or ())) or (
            not args.jit and BACKEND in JIT_SKIPPED):
        notes.append(JIT_SKIPPED[BACKEND])
        print(f"Note: {JIT_SKIPPED[BACKEND]}")
    if not jit_modes:
        raise SystemExit(f"No jit mode of --jit {' '.join(args.jit)} runs "
                         f"on {BACKEND}: use --jit {' '.join(supported)}")
    print(f"jit_compile measured: {', '.join(jit_modes)}")

    results, skipped = [], {}
    for length in lengths:
        for jit in jit_modes:
            steps_per_repeat = 5 if length <= 100 else 2
            if args.quick:
                steps_per_repeat = 1
            row_ms = {}
            for name in args.models:
                try:
                    ms = time_train_step(
                        MODELS[name], batch, length, features, jit == "on",
                        repeats, steps_per_repeat)
                except Exception as error:
                    # A switch still missing on this backend (TensorFlow has
                    # them all, and there a failure is a bug to see).
                    if BACKEND == "tensorflow" or name not in SWITCH_MODELS:
                        raise
                    skipped[name] = skip_note(name, error)
                    # A failed JAX trace can leave global state behind.
                    keras.backend.clear_session()
                    continue
                row_ms[name] = ms
                print(f"  T={length:<4d} jit={jit:<3s} {name:<24s} "
                      f"{ms:9.2f} ms/step", flush=True)
            base = row_ms.get("LSTM(128)")
            for name, ms in row_ms.items():
                results.append({
                    "backend": BACKEND, "steps": length,
                    "jit_compile": jit == "on", "model": name,
                    "ms_per_step": ms,
                    "ratio_to_lstm128": ms / base if base else None,
                })

    print(f"\nbackend {BACKEND}; batch {batch}, {features} features; median "
          f"of {repeats} repeats; ratio = time / time of LSTM(128) on the "
          "same backend, length and jit mode")
    print("| backend | steps | jit_compile | model | ms / train step | "
          "x LSTM(128) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        ratio = r["ratio_to_lstm128"]
        ratio = f"{ratio:.2f}" if ratio else "-"
        print(f"| {BACKEND} | {r['steps']} | "
              f"{'on' if r['jit_compile'] else 'off'} | {r['model']} | "
              f"{r['ms_per_step']:.2f} | {ratio} |")
    markov = "MarkovLSTM(128, K=4)"
    naive = "naive 4 x LSTMCell(128)"
    for r in results:
        if r["model"] == markov:
            other = [o for o in results if o["model"] == naive
                     and o["steps"] == r["steps"]
                     and o["jit_compile"] == r["jit_compile"]]
            if other:
                jit = "on" if r["jit_compile"] else "off"
                print(f"T={r['steps']} jit={jit}: MarkovLSTM / naive = "
                      f"{r['ms_per_step'] / other[0]['ms_per_step']:.2f}")

    # What the recurrent matmuls alone cost, to read the ratios against.
    matmuls = {}
    if BACKEND == "tensorflow":
        print("\nRecurrent matmuls of a training step alone (forward, state "
              "gradient, weight gradient), per time step:")
        for name, width in (("LSTM(128)", 4 * 128),
                            ("MarkovLSTM(128, K=4)", 4 * 4 * 128),
                            ("LSTM(512)", 4 * 512)):
            units = 512 if name == "LSTM(512)" else 128
            matmuls[name] = time_recurrent_matmuls(
                batch, units, width, max(lengths), repeats)
            print(f"  {name:<24s} {matmuls[name]:7.3f} ms per step "
                  f"(x {min(lengths)} steps = "
                  f"{matmuls[name] * min(lengths):.1f} ms)")
    else:
        note = ("recurrent matmul floor skipped: it is a tf.while_loop, "
                "TensorFlow only")
        notes.append(note)
        print(f"\nNote: {note}")
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
            try:
                adapt[label] = time_adapt(switch, *size, features, restarts)
            except Exception as error:
                if BACKEND == "tensorflow":
                    raise
                skipped[f"adapt, {label}"] = skip_note(
                    f"adapt, {label}", error)
                continue
            print(f"  {size[0]} sequences of {size[1]} steps, {restarts} "
                  f"restarts, {label}: {adapt[label]:.1f} s", flush=True)
    if skipped:
        print("\nSkipped on this backend: " + "; ".join(
            f"{name} ({reason})" for name, reason in skipped.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name(), "backend": BACKEND,
                       "backend_version": backend_version(),
                       "keras_version": keras.__version__,
                       "jit_modes": jit_modes, "batch": batch,
                       "results": results,
                       "recurrent_matmuls_ms_per_step": matmuls,
                       "adapt_seconds": adapt, "skipped": skipped,
                       "notes": notes}, f, indent=2)


if __name__ == "__main__":
    main(ARGS)
