"""The "alien signal" task, Markov LSTM or LSTM, on a real held-out test set.

Each sequence is a sine wave over 50 steps; half of them ("alien", label 1)
also carry a hidden high-frequency cosine:
`signal = sin(t) + y * cos(f * t + s)` (see
`keras_mrnn.datasets.alien_signal`). A one-layer `MarkovLSTM` of 128 units
and K = 4 LSTMs classifies them, as in the Markov RNN reference (which
reached an AUC of 0.99-1.00 after 3 epochs, but measured on its own
training data). Here the test sequences are generated separately, from
another seed, and never seen in training.

It reports the test accuracy, ROC AUC and parameter count and, for the
Markov LSTM, draws example waves of both classes with their q_z(t) and z(t),
and the usage of the K states per class. `--cell lstm` trains a
`keras.layers.LSTM` of the same width with the same recipe: the baseline.

    python examples/alien_signal.py                # the full setting
    python examples/alien_signal.py --cell lstm    # the LSTM baseline
    python examples/alien_signal.py --quick        # a CI-size run, seconds
"""

import argparse
import json
import os
import time

import _common  # examples/_common.py: the boilerplate the examples share

# ---------------------------------------------------------------- arguments
parser = _common.argument_parser(__doc__)
parser.add_argument("--cell", choices=["markov", "lstm"], default="markov",
                    help="Recurrent layer: Markov LSTM, or the "
                         "keras.layers.LSTM baseline with the same recipe.")
parser.add_argument("--epochs", type=int, default=3,
                    help="Training epochs.")
parser.add_argument("--batch-size", type=int, default=150,
                    help="Sequences per batch.")
parser.add_argument("--seed", type=int, default=1234,
                    help="Seed of the data, the initial weights and the "
                         "noise.")
parser.add_argument("--output-dir", default=None,
                    help="Where the model (.keras), metrics JSON and figures "
                         "go. Default: outputs/alien_signal_<cell>.")
parser.add_argument("--quick", action="store_true",
                    help="CI-size run: 600 training and 300 test sequences, "
                         "1 epoch, 16 units (seconds).")
parser.add_argument("--train-samples", type=int, default=50000,
                    help="Training sequences generated.")
parser.add_argument("--test-samples", type=int, default=10000,
                    help="Held-out test sequences generated.")
parser.add_argument("--num-steps", type=int, default=50,
                    help="Time steps of each sequence.")
parser.add_argument("--units", type=int, default=128,
                    help="Units of each LSTM.")
parser.add_argument("--num-states", type=int, default=4,
                    help="K, the number of LSTMs.")
parser.add_argument("--learning-rate", type=float, default=1e-3,
                    help="Adam learning rate.")
parser.add_argument("--clipnorm", type=float, default=0.25,
                    help="Gradient clipping (Keras clipnorm, per variable).")
parser.add_argument("--entropy-weight", type=float, default=0.001,
                    help="beta of the entropy regularizer (0: plain MLE).")
parser.add_argument("--temperature", type=float, default=5.0,
                    help="Initial Gumbel-softmax temperature.")
parser.add_argument("--temperature-rate", type=float, default=0.1,
                    help="Decay per epoch: tau = max(T0 * exp(-rate * epoch),"
                         " min).")
parser.add_argument("--temperature-min", type=float, default=0.1,
                    help="Floor of the temperature schedule.")
parser.add_argument("--straight-through",
                    action=argparse.BooleanOptionalAction, default=True,
                    help="Train with hard one-hot switches (straight-through "
                         "Gumbel-softmax, the library's default), so that "
                         "training and the argmax switch at test time run "
                         "the same model; --no-straight-through trains with "
                         "the reference's soft switch.")
parser.add_argument("--inference-switch",
                    choices=["argmax", "expected", "sample"], default="argmax",
                    help="Switch at test time: one-hot of the most probable "
                         "LSTM (the reference's), the soft mix q_z(t), or a "
                         "sample.")
_common.add_compile_flags(parser)  # --jit-compile, --mixed-precision
# --quick: smaller defaults; flags given on the command line still win.
args = _common.parse_args(parser, train_samples=600, test_samples=300,
                           epochs=1, units=16)
args.output_dir = args.output_dir or f"outputs/alien_signal_{args.cell}"

# Keras (and its backend) is imported after parsing, so that --help answers
# at once. set_up: quiet TensorFlow logs, figures off screen, the output
# folder, the seed, --mixed-precision, and the device line.
device = _common.set_up(args)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mrnn  # noqa: E402

# --------------------------------------------------------------------- data
# Two independent draws: the test sequences share no phase, frequency or
# shift with the training ones.
x_train, y_train = keras_mrnn.datasets.alien_signal(
    args.train_samples, args.num_steps, seed=args.seed
)
x_test, y_test = keras_mrnn.datasets.alien_signal(
    args.test_samples, args.num_steps, seed=args.seed + 1
)
print(f"{len(x_train)} training and {len(x_test)} test sequences of "
      f"{args.num_steps} steps; {100 * y_train.mean():.1f} % alien.")

# -------------------------------------------------------------------- model
inputs = keras.Input(shape=x_train.shape[1:], name="signal")
if args.cell == "markov":
    h, q, z = keras_mrnn.MarkovLSTM(
        args.units,
        num_states=args.num_states,
        temperature=args.temperature,
        entropy_weight=args.entropy_weight,
        inference_switch=args.inference_switch,
        straight_through=args.straight_through,
        return_switches=True,
        seed=args.seed,
        name="markov_lstm",
    )(inputs)
else:
    h = keras.layers.LSTM(args.units, name="lstm")(inputs)
probability = keras.layers.Dense(1, activation="sigmoid", dtype="float32",
                                 name="alien")(h)
model = keras.Model(inputs, probability, name=f"alien_{args.cell}")
model.summary()
print(f"{args.cell}: {model.count_params():,} parameters")

model.compile(
    optimizer=keras.optimizers.Adam(args.learning_rate,
                                    clipnorm=args.clipnorm),
    loss="binary_crossentropy",
    metrics=["accuracy", keras.metrics.AUC(num_thresholds=1000, name="auc")],
    jit_compile={"auto": "auto", "on": True, "off": False}[args.jit_compile],
)

# -------------------------------------------------------------------- train
callbacks = []
if args.cell == "markov":
    callbacks.append(keras_mrnn.callbacks.GumbelTemperatureScheduler(
        args.temperature, args.temperature_rate, args.temperature_min
    ))
start = time.time()
history = model.fit(
    x_train,
    y_train,
    batch_size=args.batch_size,
    epochs=args.epochs,
    callbacks=callbacks,
)
train_seconds = time.time() - start

# ----------------------------------------------------------------- evaluate
results = model.evaluate(x_test, y_test, batch_size=args.batch_size,
                         return_dict=True)
print(f"Held-out test accuracy of the {args.cell} model: "
      f"{100 * results['accuracy']:.2f} %, ROC AUC: {results['auc']:.4f}")
class_names = ["plain", "alien"]

model_path = os.path.join(args.output_dir, "model.keras")
model.save(model_path)
metrics = {
    "cell": args.cell,
    "test_accuracy": float(results["accuracy"]),
    "test_auc": float(results["auc"]),
    "test_loss": float(results["loss"]),
    "parameters": int(model.count_params()),
    "train_seconds": train_seconds,
    "device": device,
    "history": {k: [float(v) for v in vs]
                for k, vs in history.history.items()},
    "args": vars(args),
}
if args.cell == "markov":
    switch_model = keras.Model(inputs, [q, z], name="switches")
    q_test, z_test = switch_model.predict(x_test, batch_size=args.batch_size)
    usage = keras_mrnn.plotting.state_usage(z_test, labels=y_test)
    metrics["state_usage"] = {
        (class_names[k] if k != "overall" else k): v.tolist()
        for k, v in usage.items()
    }
with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)

# -------------------------------------------------------------------- plots
if args.cell == "markov":
    # Two test waves of each class, with their switches.
    examples = [int(i) for label in (0, 1)
                for i in np.flatnonzero(y_test == label)[:2]]
    fig = keras_mrnn.plotting.plot_switches(
        q_test[examples], z_test[examples], inputs=x_test[examples],
        titles=[class_names[y_test[i]] for i in examples],
    )
    fig.savefig(os.path.join(args.output_dir, "switches.png"), dpi=100)
    fig = keras_mrnn.plotting.plot_state_usage(
        z_test, labels=y_test,
        class_names=[class_names[k] for k in np.unique(y_test)],
    )
    fig.suptitle("State usage (test set)")
    fig.savefig(os.path.join(args.output_dir, "state_usage.png"), dpi=100)
fig = keras_mrnn.plotting.plot_history(history, ["loss", "accuracy", "auc"])
fig.savefig(os.path.join(args.output_dir, "history.png"), dpi=100)
print(f"Saved {model_path}, metrics.json and figures in {args.output_dir} "
      f"(training took {train_seconds:.0f} s).")
