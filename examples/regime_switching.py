"""Which LSTM when: a Markov LSTM on sequences that switch between regimes.

The sequences come from a known Markov-switching AR(1) process
(`keras_mrnn.datasets.MarkovSwitchingAR`): a hidden regime follows a sticky
Markov chain (it stays with probability 0.95 per step) and each of its three
regimes has its own level, persistence and volatility. Two models of the same
width learn next-step prediction on 2,000 sequences of 100 steps, with the
same recipe: a `MarkovLSTM` with K = 3 states and a `keras.layers.LSTM`.

On 500 held-out sequences it reports, next to the best possible figures (the
Bayes filter and predictor that know the true parameters, in NumPy):

- next-step test MSE of both models and of the Bayes predictor;
- how well argmax q_z(t) recovers the true regime, as normalized mutual
  information (NMI: 1 for a relabelling of the truth, 0 for unrelated
  labels), against the Bayes filter's argmax;

and draws a held-out sequence with its true regimes above the Bayes filter,
q_z(t) and z(t).

The Markov LSTM uses the hmm switch (`switch="hmm"`): q_z(t) is the forward
filter of a hidden Markov model of the input, each of its K states an AR(1)
regime with its own level, persistence and scale, trained on the input's
log-likelihood (`input_likelihood_weight`) beside the task. `--switch
predictive` (states predict the input from h_{t-1}) and `--switch linear`
(the reference's: logits linear in x_t and h_{t-1}) are there to compare.

    python examples/regime_switching.py            # about 80 s on 2 CPU cores
    python examples/regime_switching.py --quick    # a CI-size run, seconds
"""

import argparse
import json
import os
import time

import _common  # examples/_common.py: the boilerplate the examples share


# ---------------------------------------------------------------- arguments
parser = _common.argument_parser(__doc__)
parser.add_argument("--epochs", type=int, default=20,
                    help="Training epochs (both models).")
parser.add_argument("--batch-size", type=int, default=64,
                    help="Sequences per batch.")
parser.add_argument("--seed", type=int, default=1234,
                    help="Seed of the data, the initial weights and the "
                         "noise.")
parser.add_argument("--output-dir", default="outputs/regime_switching",
                    help="Where the models (.keras), metrics JSON and "
                         "figures go.")
parser.add_argument("--quick", action="store_true",
                    help="CI-size run: 200 training and 50 test sequences "
                         "of 40 steps, 1 epoch, 8 units (seconds).")
parser.add_argument("--train-sequences", type=int, default=2000,
                    help="Training sequences generated.")
parser.add_argument("--test-sequences", type=int, default=500,
                    help="Held-out sequences generated (another seed).")
parser.add_argument("--num-steps", type=int, default=100,
                    help="Steps of each sequence.")
parser.add_argument("--stay-probability", type=float, default=0.95,
                    help="Probability that the regime stays the same from "
                         "one step to the next.")
parser.add_argument("--units", type=int, default=32,
                    help="Units of the Markov LSTM's LSTMs and of the LSTM.")
parser.add_argument("--num-states", type=int, default=3,
                    help="K, the number of LSTMs of the Markov LSTM.")
parser.add_argument("--switch", choices=["hmm", "predictive", "linear"],
                    default="hmm",
                    help="The Markov LSTM's switch (see MarkovLSTMCell).")
parser.add_argument("--input-likelihood-weight", type=float, default=None,
                    help="Weight of the hmm or predictive switch's input "
                         "negative log-likelihood in the loss (default: the "
                         "layer's, 1.0).")
parser.add_argument("--markov-transition", action="store_true",
                    help="Add the learned K x K transition term to the "
                         "switch.")
parser.add_argument("--straight-through",
                    action=argparse.BooleanOptionalAction, default=True,
                    help="Train with hard one-hot switches (straight-through "
                         "Gumbel-softmax, the library's default), so that "
                         "training and the argmax switch at test time run "
                         "the same model; --no-straight-through trains with "
                         "the reference's soft switch.")
parser.add_argument("--temperature", type=float, default=1.0,
                    help="Gumbel-softmax temperature (constant).")
parser.add_argument("--learning-rate", type=float, default=3e-3,
                    help="Adam learning rate (both models).")
parser.add_argument("--clipnorm", type=float, default=1.0,
                    help="Gradient clipping (Keras clipnorm, per variable).")
_common.add_compile_flags(parser)  # --jit-compile, --mixed-precision
# --quick: smaller defaults; flags given on the command line still win.
args = _common.parse_args(parser, train_sequences=200,
                           test_sequences=50, num_steps=40, epochs=1,
                           units=8)

# Keras (and its backend) is imported after parsing, so that --help answers
# at once. set_up: quiet TensorFlow logs, figures off screen, the output
# folder, the seed, --mixed-precision, and the device line.
device = _common.set_up(args)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mrnn  # noqa: E402

# --------------------------------------------------------------------- data
# Inputs are x_0..x_{T-1}, targets x_1..x_T; the regime of input step t is
# the regime that generated x_t. The series is already near unit scale
# (mean 0.07, std 1.3), as the hmm and predictive switches want: no
# standardizing.
process = keras_mrnn.datasets.MarkovSwitchingAR(
    stay_probability=args.stay_probability
)
series, regimes = process.sample(args.train_sequences, args.num_steps + 1,
                                 seed=args.seed)
x_train, y_train = series[:, :-1], series[:, 1:]
series, regimes = process.sample(args.test_sequences, args.num_steps + 1,
                                 seed=args.seed + 1)
x_test, y_test, regimes_test = series[:, :-1], series[:, 1:], regimes[:, :-1]
print(f"{len(x_train)} training and {len(x_test)} held-out sequences of "
      f"{args.num_steps} steps, {process.num_regimes} regimes.")

# The ceiling: the Bayes filter and predictor with the true parameters.
posterior = process.filter(x_test)
nmi = keras_mrnn.datasets.normalized_mutual_information
bayes_prediction = process.predict_next(x_test)
results = {"bayes": {
    "mse": float(np.mean((bayes_prediction - y_test[..., 0]) ** 2)),
    "nmi": nmi(regimes_test, posterior.argmax(-1)),
}}


# ------------------------------------------------------------------- models
def train(model, callbacks=()):
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate,
                                        clipnorm=args.clipnorm),
        loss="mse",
        jit_compile={"auto": "auto", "on": True,
                     "off": False}[args.jit_compile],
    )
    start = time.time()
    history = model.fit(x_train, y_train, batch_size=args.batch_size,
                        epochs=args.epochs, callbacks=list(callbacks),
                        verbose=2)
    seconds = time.time() - start
    # The MSE from predictions: `evaluate`'s loss would include the
    # switch's added losses.
    # The held-out set in one batch: with batches of 64 the last, smaller
    # one traces each model's predict function again, and three models
    # tracing twice each set off TensorFlow's "retracing" warning.
    predicted = model.predict(x_test, batch_size=len(x_test), verbose=0)
    return history, {
        "mse": float(np.mean((predicted - y_test) ** 2)),
        "parameters": int(model.count_params()),
        "train_seconds": seconds,
    }


inputs = keras.Input(shape=(None, 1), name="series")
h, q, z = keras_mrnn.MarkovLSTM(
    args.units,
    num_states=args.num_states,
    switch=args.switch,
    input_likelihood_weight=args.input_likelihood_weight,
    markov_transition=args.markov_transition,
    straight_through=args.straight_through,
    temperature=args.temperature,
    return_sequences=True,
    return_switches=True,
    seed=args.seed,
    name="markov_lstm",
)(inputs)
markov = keras.Model(
    inputs, keras.layers.Dense(1, dtype="float32", name="next")(h),
    name="markov_lstm_model",
)
switch_model = keras.Model(inputs, [q, z], name="switches")
print(f"Markov LSTM: {markov.count_params():,} parameters")
history, results["markov"] = train(markov)

lstm = keras.Sequential([
    keras.Input(shape=(None, 1)),
    keras.layers.LSTM(args.units, return_sequences=True, name="lstm"),
    keras.layers.Dense(1, dtype="float32", name="next"),
], name="lstm_model")
print(f"LSTM: {lstm.count_params():,} parameters")
_, results["lstm"] = train(lstm)

# ----------------------------------------------------------------- evaluate
q_test, z_test = switch_model.predict(x_test, batch_size=len(x_test),
                                      verbose=0)
states = q_test.argmax(-1)
results["markov"]["nmi"] = nmi(regimes_test, states)
# Rows: true regime; columns: the state argmax q_z(t) picks.
confusion = np.zeros((process.num_regimes, args.num_states), dtype=int)
np.add.at(confusion, (regimes_test.ravel(), states.ravel()), 1)

print(f"\nHeld-out next-step MSE and regime recovery (NMI of argmax q_z(t) "
      f"with the true regime), {len(x_test)} sequences:")
print(f"  {'model':<28}{'MSE':>8}{'NMI':>8}")
for name, label in (("markov", f"MarkovLSTM({args.units}, K="
                               f"{args.num_states})"),
                    ("lstm", f"LSTM({args.units})"),
                    ("bayes", "Bayes filter, true params")):
    row = results[name]
    shown = f"{row['nmi']:8.3f}" if "nmi" in row else f"{'-':>8}"
    print(f"  {label:<28}{row['mse']:8.4f}{shown}")
print("Regime (rows) against the chosen state (columns), held-out steps:")
print(confusion)

markov.save(os.path.join(args.output_dir, "model.keras"))
lstm.save(os.path.join(args.output_dir, "lstm.keras"))
metrics = {
    **results,
    "confusion": confusion.tolist(),
    "device": device,
    "history": {k: [float(v) for v in vs]
                for k, vs in history.history.items()},
    "args": vars(args),
}
with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)

# -------------------------------------------------------------------- plots
# The model numbers its states as it likes: order them by the true regime
# each is most often used for, so that rows line up in the figure.
order = np.argsort(confusion.argmax(0) + confusion.max(0) / (
    confusion.sum() + 1.0), kind="stable")
fig = keras_mrnn.plotting.plot_regimes(
    x_test[0], regimes_test[0], q_test[0][:, order], z=z_test[0][:, order],
    reference=posterior[0],
    title=f"Held-out sequence: NMI of q_z(t) {results['markov']['nmi']:.2f}"
          f" (Bayes filter {results['bayes']['nmi']:.2f})",
)
fig.savefig(os.path.join(args.output_dir, "regimes.png"), dpi=100)
fig = keras_mrnn.plotting.plot_history(history, "loss")
fig.savefig(os.path.join(args.output_dir, "history.png"), dpi=100)
print(f"Saved the models, metrics.json and figures in {args.output_dir}.")
