"""The business cycle: a Markov LSTM on Hamilton's US GNP, against NBER.

Hamilton's quarterly US real GNP growth, 1951Q2-1984Q4 (135 quarters,
`keras_mrnn.datasets.load_gnp`, shipped with the package), and NBER's
recession quarters of the period. A `MarkovLSTM` with K = 2 states and the
hmm switch configured for level regimes of a persistent series
(`HMMSwitch(order=4, switching_ar=False, switching_scale=False,
task_gradient=False)`: the two states share their AR terms and scale, so
they can only differ by level, and the task's loss leaves the regimes to
the inputs' likelihood) is `adapt`ed to the training quarters, then trained
to forecast next-quarter growth beside a plain `keras.layers.LSTM` of the
same width. The first 80 % of the quarters train, the last 20 % test the
forecast. statsmodels' `MarkovAutoregression(k_regimes=2, order=4)`
(Hamilton's own model, fitted on the whole series as its docs do) runs in
the same process when statsmodels is installed (`pip install
".[examples]"`).

For each, against the NBER quarters: the filtered P(recession) (the state
of the lower level, from the quarters up to t) and the smoothed one (from
the whole series), each as accuracy at 0.5, ROC AUC and NMI, and the
accuracy of the Viterbi path; and the forecast RMSE on the test quarters.
It draws the series with the recessions shaded above the filtered and
smoothed probabilities and the Viterbi path.

    python examples/business_cycle.py            # about a minute on 2 cores
    python examples/business_cycle.py --quick    # a CI-size run, seconds
"""

import argparse
import json
import os
import time
import warnings

import _common  # examples/_common.py: the boilerplate the examples share


parser = _common.argument_parser(__doc__)
parser.add_argument("--epochs", type=int, default=100,
                    help="Training epochs (one sequence: one step each).")
parser.add_argument("--batch-size", type=int, default=1,
                    help="Sequences per batch (there is one).")
parser.add_argument("--seed", type=int, default=1234, help="Random seed.")
parser.add_argument("--output-dir", default="outputs/business_cycle",
                    help="Where the model, metrics.json and figures go.")
parser.add_argument("--quick", action="store_true",
                    help="A CI-size run: few epochs and restarts.")
parser.add_argument("--units", type=int, default=8,
                    help="Width of both models.")
parser.add_argument("--order", type=int, default=4,
                    help="Lags of the hmm switch's autoregression.")
parser.add_argument("--restarts", type=int, default=10,
                    help="Starts of MarkovLSTM.adapt.")
parser.add_argument("--train-fraction", type=float, default=0.8,
                    help="Leading share of the quarters that trains.")
parser.add_argument("--learning-rate", type=float, default=3e-3,
                    help="Adam learning rate (both models).")
parser.add_argument("--statsmodels", action=argparse.BooleanOptionalAction,
                    default=True,
                    help="Fit statsmodels' MarkovAutoregression too, when "
                         "it is installed.")
_common.add_compile_flags(parser)  # --jit-compile, --mixed-precision
# --quick: smaller defaults; flags given on the command line still win.
args = _common.parse_args(parser, epochs=3, restarts=2)

# Keras (and its backend) is imported after parsing, so that --help answers
# at once. set_up: quiet TensorFlow logs, figures off screen, the output
# folder, the seed, --mixed-precision, and the device line.
device = _common.set_up(args)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mrnn  # noqa: E402

# --------------------------------------------------------------------- data
growth, quarters, recession = keras_mrnn.datasets.load_gnp()
split = int(round(args.train_fraction * len(growth)))
# Standardized with the training quarters' mean and deviation.
mean, std = growth[:split].mean(), growth[:split].std()
series = ((growth - mean) / std)[None, :, None].astype("float32")
# Inputs x_0..x_{T-2}, targets x_1..x_{T-1}; the model reads the whole
# series causally, and the forecast is scored on the targets after `split`.
x_all, y_all = series[:, :-1], series[:, 1:]
train_steps = split - 1
print(f"{len(growth)} quarters {quarters[0]}-{quarters[-1]}, "
      f"{int(recession.sum())} in NBER recessions; training on "
      f"{quarters[0]}-{quarters[split - 1]}, forecasting "
      f"{quarters[split]}-{quarters[-1]}.")


def auc(score, label):
    """ROC AUC: the chance that a recession quarter scores above an
    expansion one (ties count half)."""
    pos, neg = score[label], score[~label]
    return float(((pos[:, None] > neg).sum() + 0.5 * (
        pos[:, None] == neg).sum()) / (len(pos) * len(neg)))


nmi = keras_mrnn.datasets.normalized_mutual_information


def scores(filtered, smoothed, path, truth):
    """Accuracy at 0.5, ROC AUC and NMI of P(recession), and the Viterbi
    path's accuracy (`None` where a model has no path)."""
    out = {}
    for name, p in (("filtered", filtered), ("smoothed", smoothed)):
        out[name] = {"accuracy": float(np.mean((p > 0.5) == truth)),
                     "auc": auc(p, truth),
                     "nmi": nmi(truth.astype(int), (p > 0.5).astype(int))}
    out["viterbi_accuracy"] = (
        None if path is None else float(np.mean(path == truth)))
    return out


results = {
    "always_expansion": {"accuracy": float(1 - recession.mean())},
    # The forecast that knows nothing: the training quarters' mean.
    "training_mean": {"forecast_rmse": float(np.sqrt(np.mean(
        (growth[split:] - growth[:split].mean()) ** 2)))},
}


# ------------------------------------------------------------------- models
def train(model):
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=1.0),
        loss="mse",
        jit_compile={"auto": "auto", "on": True,
                     "off": False}[args.jit_compile],
    )
    start = time.time()
    # verbose=2: one line per epoch (an epoch is one step, the one series).
    history = model.fit(x_all[:, :train_steps], y_all[:, :train_steps],
                        batch_size=args.batch_size, epochs=args.epochs,
                        verbose=2)
    seconds = time.time() - start
    # Called on the whole series, not `predict`: one sequence, and a new
    # `predict` function per model would retrace for nothing.
    # keras.ops.convert_to_numpy: a PyTorch tensor that requires grad
    # refuses np.asarray.
    predicted = keras.ops.convert_to_numpy(model(x_all, training=False))
    error = (predicted - y_all)[0, train_steps:, 0] * std
    return history, {
        "forecast_rmse": float(np.sqrt(np.mean(error ** 2))),
        # With the hmm switch this includes the input likelihood term.
        "train_loss": float(history.history["loss"][-1]),
        "parameters": int(model.count_params()),
        "train_seconds": seconds,
    }


switch = keras_mrnn.switches.HMMSwitch(
    order=args.order, switching_ar=False, switching_scale=False,
    task_gradient=False)
layer = keras_mrnn.MarkovLSTM(args.units, num_states=2, switch=switch,
                              return_sequences=True, seed=args.seed,
                              name="markov_lstm")
start = time.time()
log_likelihood = layer.adapt(series[:, :split], restarts=args.restarts,
                             seed=args.seed)
adapt_seconds = time.time() - start
inputs = keras.Input(shape=(None, 1), name="growth")
markov = keras.Model(
    inputs, keras.layers.Dense(1, dtype="float32", name="next")(layer(inputs)),
    name="markov_lstm_model")
print(f"Markov LSTM: {markov.count_params():,} parameters; adapt: "
      f"log-likelihood {log_likelihood:.2f} nats on {split} quarters, "
      f"{adapt_seconds:.1f} s")
history, results["markov"] = train(markov)
results["markov"]["adapt_log_likelihood"] = log_likelihood
results["markov"]["adapt_seconds"] = adapt_seconds

# Regimes on the whole series (the switch reads the inputs only).
recession_state = int(np.argmin(switch.get_parameters()["level"][:, 0]))
filtered = layer.regime_probabilities(series)[0, :, recession_state]
smoothed = layer.regime_probabilities(series, smoothed=True)[
    0, :, recession_state]
path = layer.most_likely_regimes(series)[0] == recession_state
results["markov"].update(scores(filtered, smoothed, path, recession))

lstm = keras.Sequential([
    keras.Input(shape=(None, 1)),
    keras.layers.LSTM(args.units, return_sequences=True, name="lstm"),
    keras.layers.Dense(1, dtype="float32", name="next"),
], name="lstm_model")
_, results["lstm"] = train(lstm)

if args.statsmodels:
    try:
        from statsmodels.tsa.regime_switching.markov_autoregression import (
            MarkovAutoregression)
    except ImportError:
        print("statsmodels is not installed (pip install '.[examples]'): "
              "skipping its MarkovAutoregression.")
        args.statsmodels = False
if args.statsmodels:
    model = MarkovAutoregression(growth, k_regimes=2, order=4,
                                 switching_ar=False)
    # Its default start and a random search around it, as a careful user
    # would (either alone can stop at a worse optimum on this series). From
    # some starts its optimizer steps to NaN probabilities and raises: that
    # start is left out, and the row when every start fails.
    reps = 2 if args.quick else 20
    fits = []
    for start, search in (("its default start", {}),
                          (f"a random search ({reps} draws)",
                           {"search_reps": reps})):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits.append(model.fit(**search))
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as error:
            print(f"statsmodels' fit from {start} failed "
                  f"({type(error).__name__}: {error}): left out.")
    fits = [f for f in fits if np.isfinite(f.llf)]
    if not fits:
        print("statsmodels' MarkovAutoregression failed from every start: "
              "skipping it.")
        args.statsmodels = False
if args.statsmodels:
    fit = max(fits, key=lambda f: f.llf)
    params = dict(zip(model.param_names, fit.params))
    low = int(np.argmin([params["const[0]"], params["const[1]"]]))
    # statsmodels conditions on the first 4 quarters.
    results["statsmodels"] = scores(
        fit.filtered_marginal_probabilities[:, low],
        fit.smoothed_marginal_probabilities[:, low], None, recession[4:])
    results["statsmodels"]["llf"] = float(fit.llf)

# ------------------------------------------------------------------ report
print(f"\nNBER recession quarters against P(recession) > 0.5 "
      f"({len(growth)} quarters; statsmodels: the {len(growth) - 4} after "
      f"its 4 lags), and the forecast RMSE of next-quarter growth "
      f"(percentage points) on {len(growth) - split} test quarters:")
print(f"  {'model':<34}{'filtered':>9}{'AUC':>7}{'smoothed':>9}{'AUC':>7}"
      f"{'Viterbi':>9}{'RMSE':>8}")
rows = [("markov", f"MarkovLSTM({args.units}, K=2)"),
        ("lstm", f"LSTM({args.units})")]
if args.statsmodels:
    rows.append(("statsmodels", "statsmodels MarkovAutoregression"))
for name, label in rows:
    row = results[name]

    def cell(value, width):
        return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"

    filt, smooth = row.get("filtered", {}), row.get("smoothed", {})
    print(f"  {label:<34}{cell(filt.get('accuracy'), 9)}"
          f"{cell(filt.get('auc'), 7)}{cell(smooth.get('accuracy'), 9)}"
          f"{cell(smooth.get('auc'), 7)}"
          f"{cell(row.get('viterbi_accuracy'), 9)}"
          f"{cell(row.get('forecast_rmse'), 8)}")
print(f"  {'always expansion':<34}"
      f"{results['always_expansion']['accuracy']:9.3f}")
print(f"  {'the training mean (forecast)':<34}{'':>41}"
      f"{results['training_mean']['forecast_rmse']:8.3f}")

markov.save(os.path.join(args.output_dir, "model.keras"))
with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
    json.dump({**results, "device": device, "args": vars(args)}, f, indent=2)

fig = keras_mrnn.plotting.plot_regimes(
    growth, recession.astype(int),
    q=np.stack([1 - filtered, filtered], -1),
    smoothed=np.stack([1 - smoothed, smoothed], -1),
    viterbi=path.astype(int), regime_name="NBER\nrecession",
    figsize=(10, 6.5),
    title=f"US real GNP growth, {quarters[0]}-{quarters[-1]}: filtered "
          f"P(recession) accuracy {results['markov']['filtered']['accuracy']:.3f}"
          f" (row 1: recession)")
# The time axis in years: step t is the t-th quarter from quarters[0]
# ("1951Q2") and spans t - 0.5 to t + 0.5, so a year starts half a step
# before its first quarter. A labelled tick every 5 years, a small one
# every year.
first_year, first_quarter = int(quarters[0][:4]), int(quarters[0][-1])
years = range(first_year + 1, int(quarters[-1][:4]) + 1)
starts = [4 * (year - first_year) - first_quarter + 0.5 for year in years]
panels = fig.axes[:-1]  # the last axes is the colour bar's
panels[-1].set_xticks(starts, minor=True)
panels[-1].set_xticks([x for x, year in zip(starts, years) if year % 5 == 0],
                      [str(year) for year in years if year % 5 == 0])
panels[-1].set_xlabel("year")
panels[0].set_ylabel("growth (%)")
fig.savefig(os.path.join(args.output_dir, "business_cycle.png"), dpi=100)
print(f"Saved the model, metrics.json and business_cycle.png in "
      f"{args.output_dir}.")
