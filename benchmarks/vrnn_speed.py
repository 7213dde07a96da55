"""Milliseconds per training step of VRNN against a Keras LSTM of the same units.

Both models read MNIST-shaped sequences (batch 150, 28 steps of 28
features; `--lengths` adds longer ones) and train with Adam:

- `keras_mrnn.VRNN(units, latent_dim=16)` on its own negative ELBO
  (`model.compile(optimizer)`, `model.fit(x)`);
- `keras.layers.LSTM(units, return_sequences=True)` with a Dense(28) head,
  a sequence model of the same recurrent width trained with MSE.

Each configuration is warmed up, then timed over several repeats; the table
shows medians and the ratio to the LSTM of the same setting and jit mode.
On the backend `KERAS_BACKEND` names (TensorFlow by default), in the jit
modes it has (see markov_lstm_speed.py: TensorFlow off and on, JAX on,
PyTorch off).

    python benchmarks/vrnn_speed.py            # full table
    python benchmarks/vrnn_speed.py --quick    # seconds, smoke test
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="Tiny run (seconds) to check that the script "
                             "works: batch 8, 16 units, sequences of 5 "
                             "steps, 2 repeats of one training step.")
    parser.add_argument("--units", type=int, default=128,
                        help="Units of the VRNN and of the LSTM "
                             "(default: 128).")
    parser.add_argument("--repeats", type=int, default=5,
                        help="Timed repeats of each configuration; the "
                             "table shows their median (default: 5).")
    parser.add_argument("--lengths", nargs="*", type=int, default=[28],
                        help="Sequence lengths (time steps) to time "
                             "(default: 28).")
    parser.add_argument("--jit", nargs="*", default=None,
                        choices=["off", "on"],
                        help="jit_compile modes to time (default: those "
                             "the backend has).")
    return parser.parse_args(argv)


if __name__ == "__main__":
    # --help answers before Keras (and its backend) is imported.
    ARGS = parse_args()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mrnn  # noqa: E402
from markov_lstm_speed import (  # noqa: E402
    BACKEND, JIT_MODES, backend_version, device_name, time_train_on_batch,
    time_training)


def build_vrnn(units, steps, features):
    model = keras.Sequential([
        keras.Input((steps, features)),
        keras_mrnn.VRNN(units, latent_dim=16, seed=0),
    ])
    return model, None


def build_lstm(units, steps, features):
    model = keras.Sequential([
        keras.Input((steps, features)),
        keras.layers.LSTM(units, return_sequences=True),
        keras.layers.Dense(features),
    ])
    return model, "mse"


def main(args):
    jit_modes = args.jit or JIT_MODES[BACKEND]
    batch, features, units = 150, 28, args.units
    lengths, repeats = args.lengths, args.repeats
    if args.quick:
        batch, lengths, repeats, units = 8, [5], 2, 16

    print(f"Device: {device_name()}; backend {BACKEND} "
          f"({backend_version()}), Keras {keras.__version__}")
    # Keras's compiled train function on TensorFlow; train_on_batch, the
    # same on every backend, elsewhere.
    timer = time_training if BACKEND == "tensorflow" else time_train_on_batch
    rows = []
    for length in lengths:
        x = np.random.default_rng(0).random(
            (batch, length, features)).astype("float32")
        for jit in jit_modes:
            timings = {}
            for name, build in [(f"LSTM({units})", build_lstm),
                                (f"VRNN({units}, latent 16)", build_vrnn)]:
                model, loss = build(units, length, features)
                model.compile(keras.optimizers.Adam(1e-3), loss,
                              jit_compile=jit == "on")
                y = x if loss else None
                timings[name] = timer(
                    model, x, y, repeats, 1 if args.quick else 5)
                print(f"  T={length:<4d} jit={jit:<3s} {name:<24s} "
                      f"{timings[name]:9.2f} ms/step", flush=True)
            base = timings[f"LSTM({units})"]
            rows += [(length, jit, name, ms, ms / base)
                     for name, ms in timings.items()]
    print(f"\nbatch {batch}, {features} features; median of {repeats} "
          f"repeats; ratio = time / time of LSTM({units}) in the same setting")
    print("| steps | jit_compile | model | ms / train step | x LSTM |")
    print("|---|---|---|---|---|")
    for length, jit, name, ms, ratio in rows:
        print(f"| {length} | {jit} | {name} | {ms:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main(ARGS)
