"""Forecasts as distributions: what the regimes say about the next values.

A regime-switching model's forecast is a distribution, a mixture over the
regimes the next step may be in. This example fits `keras_mrnn.
regime_forecaster` (an LSTM summary of the past, then a `RegimeMixture`
head: K Student-t regimes whose locations and scales move with the LSTM's
state, weighted by the exact forward filter of their Markov chain) to the
first 75 % of a series, then, with its parameters fixed, forecasts every
step of the last 25 % one step ahead and scores those forecasts:

- log score (mean log predictive density, nats per step, higher is
  better), CRPS and RMSE of the mean (lower is better), and the share of
  test steps inside the 90 % central interval (0.90 is calibrated);
- against the training period's Gaussian, in the same run
  (`benchmarks/forecast.py` adds GARCH, statsmodels, hmmlearn and an LSTM).

Then it forecasts the 8 steps after the series' end (sample paths) and
draws the history, the fan of quantiles and the future regime probabilities
to `outputs/forecasting/forecast.png`.

Series: Hamilton's US GNP growth (`--series gnp`, shipped with the package;
there the regime model alone, `--units 0`, forecasts best: 101 quarters are
too few for an LSTM) or daily S&P 500 returns (`--series sp500`, 100 x log
returns of the last 3000 days, from the `arch` package's data:
`pip install arch`; `--units 32`).

    python examples/forecasting.py                          # GNP, seconds
    python examples/forecasting.py --series sp500 --units 32  # a few minutes
    python examples/forecasting.py --quick                  # a CI-size run
"""

import json
import os

import _common  # examples/_common.py: the boilerplate the examples share

# ---------------------------------------------------------------- arguments
parser = _common.argument_parser(__doc__)
parser.add_argument("--series", choices=["gnp", "sp500"], default="gnp",
                    help="The series to forecast.")
parser.add_argument("--units", type=int, default=0,
                    help="Units of the LSTM summary (0: the regime model "
                         "alone).")
parser.add_argument("--num-states", type=int, default=2,
                    help="K, the number of regimes.")
parser.add_argument("--window", type=int, default=None,
                    help="Training window length (default: 20 for GNP, 250 "
                         "for the S&P 500).")
parser.add_argument("--epochs", type=int, default=200,
                    help="At most this many epochs (early stopping on the "
                         "last 15 %% of the training period).")
parser.add_argument("--batch-size", type=int, default=16,
                    help="Training windows per batch.")
parser.add_argument("--horizon", type=int, default=8,
                    help="Steps forecast after the end of the series.")
parser.add_argument("--seed", type=int, default=0,
                    help="Seed of the initial weights and the sample paths.")
parser.add_argument("--output-dir", default="outputs/forecasting",
                    help="Where the model, metrics JSON and figure go.")
parser.add_argument("--quick", action="store_true",
                    help="CI-size run: 3 epochs, 200 sample paths.")
_common.add_compile_flags(parser)
args = _common.parse_args(parser, epochs=3)
_common.set_up(args)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mrnn  # noqa: E402
from keras_mrnn import forecasting  # noqa: E402
from keras_mrnn.switches import HMMSwitch  # noqa: E402

# --------------------------------------------------------------------- data
if args.series == "gnp":
    y, quarters, _ = keras_mrnn.datasets.load_gnp()
    times = np.array([int(q[:4]) + (int(q[-1]) - 1) / 4 for q in quarters])
    times = np.concatenate([times, times[-1] + np.arange(1, args.horizon + 1)
                            / 4])
    window = args.window or 20
else:
    from arch.data import sp500

    prices = sp500.load()["Adj Close"].to_numpy()
    y = (100 * np.diff(np.log(prices)))[-3000:]
    times = None
    window = args.window or 250
n = len(y)
n_train = int(0.75 * n)
n_fit = int(0.85 * n_train)        # The rest of training: early stopping.
# Standardized by the training period (the switch's levels start at the
# quantiles of N(0, 1)); the scores are on the series' own scale.
mean, std = y[:n_train].mean(), y[:n_train].std()
z = ((y - mean) / std).astype("float32")


def windows(values):
    stride = max(window // 10, 1)
    return np.stack([values[s:s + window] for s in
                     range(0, len(values) - window + 1, stride)])[..., None]


# -------------------------------------------------------------------- model
model = keras_mrnn.regime_forecaster(
    units=args.units, num_states=args.num_states, seed=args.seed,
    switch=HMMSwitch(order=0, distribution="student_t"))
head = model.layers[-1]
log_likelihood = head.adapt(z[None, :n_train, None], restarts=4, seed=0)
print(f"EM start (Gaussian regimes): log-likelihood {log_likelihood:.1f}")
model.compile(keras.optimizers.Adam(3e-3),
              jit_compile={"auto": "auto", "on": True, "off": False}[
                  args.jit_compile])
validation = z[max(0, n_fit - window // 2):n_train]
model.fit(windows(z[:n_fit]), validation_data=(validation[None, :, None],),
          epochs=args.epochs, batch_size=args.batch_size, verbose=2,
          callbacks=[keras.callbacks.EarlyStopping(
              "val_loss", patience=8, restore_best_weights=True)])

# ------------------------------------------------- one step ahead, scored
outputs = model.predict(z[None, :, None], verbose=0)[0]
# Output t is the distribution of z_{t+1}; back on the series' scale.
standardized = head.distribution(outputs[n_train - 1:-1])[:, 0]
ours = forecasting.PredictiveMixture(
    weights=standardized.weights, loc=mean + std * standardized.loc,
    scale=std * standardized.scale, df=standardized.df)
gaussian = forecasting.PredictiveMixture(
    weights=np.ones((n - n_train, 1)), loc=np.full((n - n_train, 1), mean),
    scale=np.full((n - n_train, 1), std))
test = y[n_train:]
scores = {"regime_forecaster": forecasting.score(ours, test),
          "training Gaussian": forecasting.score(gaussian, test)}
print(f"\n{args.series}: one-step-ahead forecasts of the last "
      f"{n - n_train} steps")
print(f"  {'model':22s} {'log score':>9s} {'CRPS':>7s} {'90% cov':>7s} "
      f"{'RMSE':>7s}")
for name, s in scores.items():
    print(f"  {name:22s} {s['log_score']:9.3f} {s['crps']:7.3f} "
          f"{s['coverage']:7.3f} {s['rmse']:7.3f}")

# ------------------------------------------ the steps after the series
history = z[None, -max(window, 40):, None]
result = head.forecast(model, history, horizon=args.horizon,
                       num_samples=200 if args.quick else 2000,
                       quantiles=(0.05, 0.25, 0.5, 0.75, 0.95),
                       seed=args.seed)
# Back on the series' scale, for the figure.
result = result._replace(
    mean=mean + std * result.mean, quantiles=mean + std * result.quantiles,
    samples=mean + std * result.samples)
print(f"\nNext {args.horizon} steps: median "
      f"{np.round(result.quantiles[2, 0, :, 0], 2).tolist()}, "
      f"P(regime 0) {np.round(result.regime_probabilities[0, :, 0], 2)}")
fig = keras_mrnn.plotting.plot_forecast(
    y[-len(history[0]):], result,
    times=None if times is None else times[-len(history[0])
                                           - args.horizon:],
    last=40, title=f"{args.series}: forecast after the last observation")
fig.savefig(os.path.join(args.output_dir, "forecast.png"), dpi=120)
model.save(os.path.join(args.output_dir, "model.keras"))
with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
    json.dump({"series": args.series, "units": args.units,
               "scores": scores}, f, indent=2)
print(f"Saved the model, metrics.json and forecast.png in "
      f"{args.output_dir}.")
