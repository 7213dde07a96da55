"""Keras's classic stateful-LSTM example: Markov LSTM, LSTM or VRNN cells.

A damped cosine of 50,000 points is fed one point per sample (one time step)
to two stacked stateful recurrent layers of 50 units, in batches of 25, with
`shuffle=False`: the states carried from batch to batch are the model's
memory. The target is the mean of the next `lahead` = 1 points. RMSprop,
MSE, 15 epochs, the states reset after every epoch; then predict and plot
expected against predicted.

    python examples/stateful_cosine.py                  # --cell markov
    python examples/stateful_cosine.py --cell lstm      # the Keras baseline
    python examples/stateful_cosine.py --cell vrnn      # VRNN features
    python examples/stateful_cosine.py --quick          # CI-size, seconds

`--cell markov` stacks `keras.layers.RNN(keras_mrnn.MarkovLSTMCell(50),
stateful=True)` layers (Gumbel temperature annealed per epoch; on JAX, where
Keras's loop cannot advance the cell's noise, `keras_mrnn.MarkovLSTM`), `--cell
lstm` `keras.layers.LSTM(50, stateful=True)` layers, and `--cell vrnn` puts a
stateful `keras_mrnn.VRNN` feature layer (trained on its own negative ELBO of
the input series, added to the MSE) under a stateful LSTM regressor.

As in the original, sample `i` of batch `j` is point `25 j + i`, so each of
the 25 state rows sees every 25th point. `--contiguous-streams` instead lays
the series out with `keras_mrnn.stateful.make_stateful_batches`, so that each
state row reads one contiguous stretch of 2,000 points: the usual way to feed
a stateful model.
"""

import argparse
import json
import os
import time

import _common  # examples/_common.py: the boilerplate the examples share

# ---------------------------------------------------------------- arguments
parser = _common.argument_parser(__doc__)
parser.add_argument("--cell", choices=["markov", "lstm", "vrnn"],
                    default="markov",
                    help="Recurrent layers: Markov LSTM, keras LSTM baseline,"
                         " or VRNN features under an LSTM.")
parser.add_argument("--epochs", type=int, default=15,
                    help="Training epochs.")
parser.add_argument("--batch-size", type=int, default=25,
                    help="Stateful batch size: parallel state rows.")
parser.add_argument("--seed", type=int, default=1234,
                    help="Seed of the data, the initial weights and the "
                         "noise.")
parser.add_argument("--output-dir", default=None,
                    help="Default: outputs/stateful_cosine_<cell>.")
parser.add_argument("--quick", action="store_true",
                    help="CI-size run: 1,000 points, 1 epoch (seconds).")
parser.add_argument("--num-points", type=int, default=50000,
                    help="Length of the cosine series.")
parser.add_argument("--lahead", type=int, default=1,
                    help="The target is the mean of the next LAHEAD points.")
parser.add_argument("--units", type=int, default=50,
                    help="Units of each of the two stacked recurrent layers.")
parser.add_argument("--num-states", type=int, default=4,
                    help="K of the Markov LSTM.")
parser.add_argument("--temperature", type=float, default=1.0,
                    help="Initial Gumbel-softmax temperature (markov). 1.0, "
                         "not the reference's 5.0: with the straight-through "
                         "switch 5.0 measured a test MSE about twice as "
                         "large (docs/results.md).")
parser.add_argument("--temperature-rate", type=float, default=0.1,
                    help="Decay per epoch: tau = max(T0 * exp(-rate * epoch),"
                         " min).")
parser.add_argument("--temperature-min", type=float, default=0.1,
                    help="Floor of the temperature schedule.")
parser.add_argument("--straight-through",
                    action=argparse.BooleanOptionalAction, default=True,
                    help="Train the Markov LSTM with hard one-hot switches "
                         "(the library's default); --no-straight-through: "
                         "the reference's soft switch.")
parser.add_argument("--inference-switch",
                    choices=["argmax", "expected", "sample"], default="argmax",
                    help="Markov LSTM switch at prediction time: one-hot of "
                         "the most probable LSTM, the soft mix q_z(t), or a "
                         "sample.")
parser.add_argument("--latent-dim", type=int, default=8,
                    help="Latent size of the VRNN (vrnn).")
parser.add_argument("--contiguous-streams", action="store_true",
                    help="Feed each state row a contiguous stretch of the "
                         "series (make_stateful_batches).")
_common.add_compile_flags(parser)  # --jit-compile, --mixed-precision
# --quick: smaller defaults; flags given on the command line still win.
args = _common.parse_args(parser, num_points=1000, epochs=1)
args.output_dir = args.output_dir or f"outputs/stateful_cosine_{args.cell}"

# Keras (and its backend) is imported after parsing, so that --help answers
# at once. set_up: quiet TensorFlow logs, figures off screen, the output
# folder, the seed, --mixed-precision, and the device line.
device = _common.set_up(args)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mrnn  # noqa: E402

# --------------------------------------------------------------------- data
x, y = keras_mrnn.datasets.stateful_cosine(args.num_points, lahead=args.lahead)
if args.num_points % args.batch_size:
    # A last batch smaller than the batch size would corrupt the states.
    raise SystemExit(
        f"--num-points ({args.num_points}) must be a multiple of "
        f"--batch-size ({args.batch_size}) for a stateful model."
    )
if args.contiguous_streams:
    x, y = keras_mrnn.stateful.make_stateful_batches(
        x[:, 0, :], y, batch_size=args.batch_size, window=1
    )
    y = y[:, 0, :]
print(f"Input shape {x.shape}, target shape {y.shape}.")

# -------------------------------------------------------------------- model
inputs = keras.Input(batch_shape=(args.batch_size, 1, 1), name="cosine")
if args.cell == "markov":
    markov = dict(num_states=args.num_states, temperature=args.temperature,
                  straight_through=args.straight_through,
                  inference_switch=args.inference_switch)
    # On JAX, Keras runs a bare cell inside jax.lax.scan, where its Gumbel
    # noise cannot advance (the cell refuses): the package's layer draws
    # the noise of all steps before its loop.
    bare_cell = keras.backend.backend() != "jax"
    if not bare_cell:
        print("JAX: keras_mrnn.MarkovLSTM layers instead of "
              "keras.layers.RNN(MarkovLSTMCell), which cannot draw its "
              "noise inside JAX's loop.")
    h = inputs
    for index in range(2):
        if bare_cell:
            layer = keras.layers.RNN(
                keras_mrnn.MarkovLSTMCell(args.units, seed=args.seed + index,
                                          **markov),
                stateful=True, return_sequences=index == 0,
                name=f"markov_lstm_{index}")
        else:
            layer = keras_mrnn.MarkovLSTM(
                args.units, seed=args.seed + index, stateful=True,
                return_sequences=index == 0, name=f"markov_lstm_{index}",
                **markov)
        h = layer(h)
elif args.cell == "lstm":
    h = keras.layers.LSTM(args.units, stateful=True, return_sequences=True,
                          name="lstm_0")(inputs)
    h = keras.layers.LSTM(args.units, stateful=True, name="lstm_1")(h)
else:
    # The VRNN models the input series itself (its negative ELBO joins the
    # loss); its deterministic state h_t feeds the LSTM regressor. The
    # series is scaled to about unit range for the VRNN's Gaussian decoder.
    scaled = keras.layers.Rescaling(0.01, name="scale")(inputs)
    h = keras_mrnn.VRNN(
        args.units, latent_dim=args.latent_dim, stateful=True,
        return_sequences=True, seed=args.seed, name="vrnn",
    )(scaled)
    h = keras.layers.LSTM(args.units, stateful=True, name="lstm")(h)
outputs = keras.layers.Dense(1, dtype="float32", name="prediction")(h)
model = keras.Model(inputs, outputs, name=f"stateful_cosine_{args.cell}")
model.summary()

model.compile(
    optimizer="rmsprop",
    loss="mse",
    jit_compile={"auto": "auto", "on": True, "off": False}[args.jit_compile],
)

# -------------------------------------------------------------------- train
callbacks = [keras_mrnn.callbacks.ResetStates()]
if args.cell == "markov":
    callbacks.append(keras_mrnn.callbacks.GumbelTemperatureScheduler(
        args.temperature, args.temperature_rate, args.temperature_min
    ))
start = time.time()
history = model.fit(
    x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=False,
    callbacks=callbacks,
)
train_seconds = time.time() - start

# ------------------------------------------------------------------ predict
keras_mrnn.reset_states(model)
predicted = model.predict(x, batch_size=args.batch_size)
if args.contiguous_streams:
    # Back to time order for the metrics and the plot.
    predicted = keras_mrnn.stateful.merge_stateful_batches(
        predicted[:, None, :], batch_size=args.batch_size
    )
    y = keras_mrnn.stateful.merge_stateful_batches(
        y[:, None, :], batch_size=args.batch_size
    )
mse = float(np.mean((predicted - y) ** 2))
print(f"MSE of the {args.cell} model over the series: {mse:.4f} "
      f"(variance of the target: {float(np.var(y)):.2f})")

model_path = os.path.join(args.output_dir, "model.keras")
model.save(model_path)
metrics = {
    "cell": args.cell,
    "mse": mse,
    "target_variance": float(np.var(y)),
    "train_seconds": train_seconds,
    "device": device,
    "history": {k: [float(v) for v in vs]
                for k, vs in history.history.items()},
    "args": vars(args),
}
with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)

# -------------------------------------------------------------------- plots
fig = keras_mrnn.plotting.plot_predictions(
    y, predicted, title=f"Stateful {args.cell}: expected vs predicted "
                        f"(MSE {mse:.3g})",
)
fig.savefig(os.path.join(args.output_dir, "predictions.png"), dpi=100)
fig = keras_mrnn.plotting.plot_history(history, ["loss"])
fig.savefig(os.path.join(args.output_dir, "history.png"), dpi=100)
print(f"Saved {model_path}, metrics.json and figures in {args.output_dir} "
      f"(training took {train_seconds:.0f} s).")
