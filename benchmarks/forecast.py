"""One-step-ahead forecasts as distributions, scored against the peers.

Run on a column of any CSV file, or on a series shipped by name:

    python benchmarks/forecast.py --csv PATH --column NAME \\
        --transform {none,diff,logdiff100} [--seeds 3] [--json OUT] [--quick]
    python benchmarks/forecast.py --series {gnp,sp500} [...]
    python benchmarks/forecast.py --series gnp --models gaussian ar lstm

`--series gnp` is Hamilton's US real GNP growth (quarterly, percent;
`keras_mrnn.datasets.load_gnp`), `--series sp500` the daily S&P 500 100 x
log returns of 'Adj Close', the last 3000 days (`arch.data.sp500`, needs
arch). `--transform` turns a CSV column into the series: `none`, `diff`
(first differences) or `logdiff100` (100 x the change of the log, the
percent growth or return).

Protocol (../shared/REFERENCES.md, "Forecasting distributions"): the first
75 % of the series to fit, the last 25 % to test; every model forecasts
each test step one step ahead, as a `keras_mrnn.forecasting.
PredictiveMixture`, from the values before it, with its parameters fixed
after fitting (filters and variance recursions continue through the
observed test values). Every model is scored on the same test steps with
`keras_mrnn.forecasting.score`: log score (mean log predictive density,
nats per step, higher is better), CRPS (lower is better), the coverage of
the central 90 % interval (from the PIT) and the RMSE of the predictive
mean.

The models (peers not installed are skipped with a note; `pip install
".[benchmarks]"` adds them):

- Gaussian: the training sample's mean and standard deviation.
- AR(p): statsmodels `AutoReg` with a constant, p <= `--ar-maxlag` (4) by
  AIC (`ar_select_order`), Gaussian errors of the training variance.
- GARCH(1,1), normal and Student-t errors: arch, constant mean, fitted on
  the training part (`last_obs`), the variance recursion continued through
  the test at the fitted parameters.
- MarkovRegression(2): statsmodels, switching mean and variance.
- MarkovAutoregression(2, order p): statsmodels, Hamilton's model (a
  switching mean, AR coefficients shared: `switching_ar=False`) with
  switching variance; order 4 on GNP, else `--mar-order` (1). (With
  switching AR coefficients too, the order-4 fit on GNP's 101 training
  quarters is multimodal: test log scores from -1.54 to -1.79 by the random
  search's seed.) Both Markov-switching models are fitted
  with a random search seeded through `fit(..., search_reps=...,
  rng=np.random.default_rng(seed))`, and filtered over the whole series at
  the fitted parameters: the predictive mixture at each test step weights
  the regimes' normal densities by the predicted regime probabilities
  (`regime_transition` is column-stochastic: P @ filtered_{t-1}); its log
  density is checked against statsmodels' `llf_obs` to 1e-6.
- GaussianHMM(2): hmmlearn, its forward filter over the whole series at the
  fitted parameters (`transmat_` is row-stochastic: filtered_{t-1} @ A);
  the one-step densities summed over the series are checked against
  `score`.
- LSTM(32): a Keras `LSTM(32)` on windows of the last 20 values
  (standardized by the training mean and deviation) with a Gaussian
  density head (`Dense(2)`: the mean and, through softplus, the scale),
  trained on the negative log-likelihood with `model.fit` (Adam 1e-3,
  batches of 32, `--epochs` 30); `--seeds` seeds (0, 1, ...), scored per
  seed and averaged.
- regime_forecaster (K=2): the package's forecasting model
  (`keras_mrnn.regime_forecaster`): an LSTM(32) summary of [x, |x|] and a
  `RegimeMixture` head of 2 Student-t regimes (order 0) weighted by the
  exact filter, started from EM and trained on the negative log predictive
  density on windows of the first 85 % of the training part, stopping
  early on the rest; the same without the LSTM (the regime model alone) is
  trained too, and the one with the better validation loss is kept (no
  test value read); `--seeds` seeds.
- LSTM(32), the same head (K=1): the same model, recipe and seeds with one
  regime: an LSTM with a Student-t density head.

A full run takes about 1 minute on GNP and 4 minutes on the S&P 500 on a
2-core CPU (the seeded Keras models most of it).

`--models` runs only the rows named by their keys (gaussian, ar,
garch_normal, garch_t, markov_regression, markov_autoregression, hmmlearn,
lstm, lstm_same_head, regime_forecaster; default all).

Prints a table and, last, one JSON line with every model's scores and wall
time (per seed for the seeded models, and their mean); `--json OUT` writes
the same JSON. `--quick`: at most the last 400 values of the series and
tiny fits, so that it runs end to end in seconds.
"""

import argparse
import csv
import importlib.util
import json
import math
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# keras_mrnn (and so Keras) is imported where it is used, after the
# arguments are checked: argparse's errors come back at once.

TRAIN_FRACTION = 0.75
LEVEL = 0.9
SP500_DAYS = 3000
QUICK_LENGTH = 400
# The shortest series the benchmark takes: enough to fit a Gaussian and
# score a few steps (models that need more are skipped with a note).
MIN_LENGTH = 12
TRANSFORMS = ("none", "diff", "logdiff100")
SERIES = ("gnp", "sp500")


# ------------------------------------------------------------------ data
def split_point(n):
    """The number of training values: the first 75 % of `n`."""
    return int(TRAIN_FRACTION * n)


def transform_series(values, transform):
    """Applies `transform` (`none`, `diff`, `logdiff100`) to a 1-D series.

    Raises:
        ValueError: If `logdiff100` meets a value that is not positive.
    """
    values = np.asarray(values, np.float64)
    if transform == "none":
        return values
    if transform == "diff":
        return np.diff(values)
    if transform == "logdiff100":
        if (values <= 0).any():
            raise ValueError(
                "--transform logdiff100 needs positive values; the column "
                f"has {int((values <= 0).sum())} value(s) <= 0."
            )
        return 100.0 * np.diff(np.log(values))
    raise ValueError(f"Unknown transform {transform!r}; one of {TRANSFORMS}.")


MISSING = {"", "na", "nan", "null", "."}


def read_csv_column(path, column):
    """The float values of `column` in a CSV file with a header row.

    Lines starting with `#` are comments; missing values (empty, `NA`,
    `NaN`, `null`, `.`) are dropped.

    Returns:
        `(values, num_missing)`.

    Raises:
        KeyError: If the column is not in the header (the message lists
            the columns).
        ValueError: If a value is not a number.
    """
    with open(path, newline="") as f:
        lines = [line for line in f if not line.lstrip().startswith("#")]
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path} has no header row.")
    header = [name.strip() for name in header]
    if column not in header:
        raise KeyError(f"column {column!r} is not in {path}; its columns "
                       f"are {header}.")
    index = header.index(column)
    values, missing = [], 0
    for number, row in enumerate(reader, start=2):
        cell = row[index].strip() if index < len(row) else ""
        if cell.lower() in MISSING:
            missing += 1
            continue
        try:
            values.append(float(cell))
        except ValueError:
            raise ValueError(
                f"{path}, data row {number}: {cell!r} in column {column!r} "
                "is not a number."
            ) from None
    return np.array(values), missing


def load_series(name):
    """A shipped series by name: `(values, description)`."""
    if name == "gnp":
        from keras_mrnn.datasets import load_gnp

        growth, quarters, _ = load_gnp()
        return growth, (f"Hamilton's US real GNP growth, % per quarter, "
                        f"{quarters[0]}-{quarters[-1]}")
    if name == "sp500":
        from arch.data import sp500

        close = sp500.load()["Adj Close"].to_numpy(np.float64)
        returns = 100.0 * np.diff(np.log(close))[-SP500_DAYS:]
        return returns, (f"S&P 500 daily 100 x log returns of 'Adj Close', "
                         f"the last {len(returns)} days (arch.data.sp500)")
    raise ValueError(f"Unknown series {name!r}; one of {SERIES}.")


# ----------------------------------------------------------------- peers
def mixture(*args, **kwargs):
    """`keras_mrnn.forecasting.PredictiveMixture`, imported on first use."""
    from keras_mrnn.forecasting import PredictiveMixture

    return PredictiveMixture(*args, **kwargs)


def _gaussians(loc, scale):
    """A batch of single Gaussians."""
    loc = np.asarray(loc, np.float64)[:, None]
    scale = np.broadcast_to(np.asarray(scale, np.float64), loc.shape[:1])
    return mixture(np.ones_like(loc), loc, scale[:, None])


def gaussian_forecasts(y, n_train):
    """The training sample's Gaussian (mean, standard deviation with
    ddof 0) for every test step."""
    train = y[:n_train]
    n_test = len(y) - n_train
    mean, std = float(train.mean()), float(train.std())
    return _gaussians(np.full(n_test, mean), std), {"mean": mean,
                                                    "std": std}


def ar_forecasts(y, n_train, maxlag=4, lags=None):
    """AR(p) with a constant (statsmodels `AutoReg`), p by AIC.

    The lags are chosen by `ar_select_order(..., maxlag, ic="aic")` on the
    training part unless `lags` is given (an int p or a list of lags, `0`
    for none); the coefficients and the error variance (`sigma2`, the
    residual sum of squares over the number of residuals) are fitted on the
    training part, and each test step's forecast is
    `N(c + sum_i phi_i y_{t-i}, sigma2)` at those parameters.
    """
    from statsmodels.tsa.ar_model import AutoReg, ar_select_order

    train = y[:n_train]
    if lags is None:
        maxlag = max(0, min(int(maxlag), n_train // 3))
        if maxlag == 0:
            lags = 0
        else:
            lags = ar_select_order(train, maxlag=maxlag, ic="aic",
                                   trend="c").ar_lags
            lags = 0 if not lags else list(lags)
    fitted = AutoReg(train, lags=lags, trend="c").fit()
    params = np.asarray(fitted.params)
    predictions = np.asarray(
        AutoReg(y, lags=lags, trend="c").predict(params))[n_train:]
    chosen = [] if lags == 0 else (
        list(range(1, lags + 1)) if isinstance(lags, int) else lags)
    return _gaussians(predictions, math.sqrt(fitted.sigma2)), {
        "lags": [int(lag) for lag in chosen],
        "sigma2": float(fitted.sigma2),
    }


def garch_forecasts(y, n_train, dist="normal"):
    """GARCH(1,1) with a constant mean (arch), normal or Student-t errors.

    Fitted on the training part (`fit(last_obs=n_train)`: the starting
    variance is from the training part too), then the variance recursion
    continues through the test at the fitted parameters:
    `forecast(horizon=1, start=n_train - 1, align="target")` gives each
    test step's conditional mean and variance from the values before it.
    Student-t errors have unit variance in arch: the location-scale t's
    scale is `sqrt(variance (nu - 2) / nu)`.
    """
    from arch import arch_model

    model = arch_model(y, mean="Constant", vol="GARCH", p=1, q=1,
                       dist=dist, rescale=False)
    fitted = model.fit(last_obs=n_train, disp="off")
    forecast = fitted.forecast(horizon=1, start=n_train - 1, align="target",
                               reindex=True)
    mean = np.asarray(forecast.mean)[n_train:, 0]
    variance = np.asarray(forecast.variance)[n_train:, 0]
    info = {"params": {k: float(v) for k, v in fitted.params.items()}}
    if dist == "normal":
        return _gaussians(mean, np.sqrt(variance)), info
    nu = float(fitted.params["nu"])
    scale = np.sqrt(variance * (nu - 2.0) / nu)
    return mixture(np.ones((len(mean), 1)), mean[:, None], scale[:, None],
                   df=nu), info


def _check_llf(forecast, y_test, llf, name):
    gap = float(np.max(np.abs(forecast.log_prob(y_test) - llf)))
    if not gap <= 1e-6:
        raise RuntimeError(
            f"{name}: the predictive mixture's log density differs from "
            f"statsmodels' llf_obs by {gap:.3g} (> 1e-6)."
        )
    return gap


def markov_regression_forecasts(y, n_train, seed=0, search_reps=20):
    """statsmodels `MarkovRegression(k_regimes=2, switching_variance=True)`.

    Fitted on the training part (random search seeded by `seed`), filtered
    over the whole series at the fitted parameters; each test step's
    forecast is the mixture of the regimes' normals weighted by the
    predicted regime probabilities `P @ filtered_{t-1}` (`P[i, j] =
    P(s_t = i | s_{t-1} = j)`), whose log density equals `llf_obs` (checked
    to 1e-6).
    """
    from statsmodels.tsa.regime_switching.markov_regression import (
        MarkovRegression,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = MarkovRegression(
            y[:n_train], k_regimes=2, switching_variance=True
        ).fit(search_reps=search_reps, rng=np.random.default_rng(seed),
              disp=False)
        params = np.asarray(fitted.params)
        model = MarkovRegression(y, k_regimes=2, switching_variance=True)
        result = model.filter(params)
    k = model.k_regimes
    transition = model.regime_transition_matrix(params)[..., 0]
    filtered = np.asarray(result.filtered_marginal_probabilities)
    predicted = filtered[n_train - 1:-1] @ transition.T
    means = model.predict_conditional(params)[:, 0, n_train:].T
    variance = np.broadcast_to(
        params[model.parameters["variance"]], (k,))
    forecast = mixture(predicted, means, np.sqrt(variance)[None, :])
    gap = _check_llf(forecast, y[n_train:],
                     np.asarray(result.llf_obs)[n_train:],
                     "MarkovRegression")
    return forecast, {
        "params": dict(zip(model.param_names, map(float, params))),
        "llf_train": float(fitted.llf), "max_gap_to_llf_obs": gap,
        "search_reps": search_reps,
    }


def markov_autoregression_forecasts(y, n_train, order=4, seed=0,
                                    search_reps=20):
    """statsmodels `MarkovAutoregression(k_regimes=2, order,
    switching_ar=False, switching_variance=True)` (Hamilton's model with a
    switching variance).

    As `markov_regression_forecasts`, over the joint regimes `(s_t, ...,
    s_{t-order})` the model conditions on: their predicted probabilities
    are `P[s_t, s_{t-1}]` times the filtered joint probabilities at `t - 1`
    summed over `s_{t-order-1}`; each joint regime's normal has the
    conditional mean `predict_conditional` gives and the variance
    statsmodels gives it. (With `order > 1` statsmodels indexes the
    switching variance by the regime `order - 1` steps back, a broadcast of
    a `(k, 1, 1)` array against the joint axes; the mixture follows it, so
    that its log density equals `llf_obs`, checked to 1e-6.)
    """
    from statsmodels.tsa.regime_switching.markov_autoregression import (
        MarkovAutoregression,
    )

    kwargs = dict(k_regimes=2, order=order, switching_ar=False,
                  switching_variance=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = MarkovAutoregression(y[:n_train], **kwargs).fit(
            search_reps=search_reps, rng=np.random.default_rng(seed),
            disp=False)
        params = np.asarray(fitted.params)
        model = MarkovAutoregression(y, **kwargs)
        result = model.filter(params)
    k = model.k_regimes
    transition = model.regime_transition_matrix(params)[..., 0]
    # The model's time i is the series' i + order.
    first = n_train - order
    joint = np.asarray(result.filtered_joint_probabilities)
    previous = joint[..., first - 1:-1].sum(axis=order)
    predicted = transition.reshape((k, k) + (1,) * (order - 1) + (1,)) * \
        previous[None]
    means = model.predict_conditional(params)
    variance = params[model.parameters["variance"]]
    # statsmodels' own broadcast (MarkovAutoregression.
    # _conditional_loglikelihoods), time axis included.
    variance = np.broadcast_to(np.reshape(variance, (k, 1, 1)), means.shape)
    components = k ** (order + 1)

    def flat(array):
        return np.moveaxis(array[..., first:], -1, 0).reshape(-1, components)

    forecast = mixture(
        np.moveaxis(predicted, -1, 0).reshape(-1, components), flat(means),
        np.sqrt(flat(variance)))
    gap = _check_llf(forecast, y[n_train:],
                     np.asarray(result.llf_obs)[first:],
                     "MarkovAutoregression")
    return forecast, {
        "params": dict(zip(model.param_names, map(float, params))),
        "order": order, "llf_train": float(fitted.llf),
        "max_gap_to_llf_obs": gap, "search_reps": search_reps,
    }


def hmm_forecasts(y, n_train, seed=0, n_iter=200):
    """hmmlearn `GaussianHMM(2)`'s predictive mixture.

    Fitted on the training part (EM, `random_state=seed`); its forward
    filter runs over the whole series at the fitted parameters and each
    test step's forecast weights the regimes' normals by `filtered_{t-1} @
    transmat_` (row-stochastic). The one-step log densities over the whole
    series sum to hmmlearn's `score` (checked).
    """
    from hmmlearn.hmm import GaussianHMM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianHMM(2, covariance_type="diag", n_iter=n_iter,
                            tol=1e-6, random_state=seed)
        model.fit(y[:n_train, None])
        total = float(model.score(y[:, None]))
    means = model.means_[:, 0]
    std = np.sqrt(model.covars_[:, 0, 0])
    transition = model.transmat_
    predicted = np.empty((len(y), len(means)))
    prior = model.startprob_
    log_density = np.empty(len(y))
    log_norm = -np.log(std) - 0.5 * math.log(2 * math.pi)
    for t in range(len(y)):
        predicted[t] = prior
        log_component = log_norm - 0.5 * ((y[t] - means) / std) ** 2
        top = log_component.max()
        joint = prior * np.exp(log_component - top)
        log_density[t] = top + math.log(joint.sum())
        prior = (joint / joint.sum()) @ transition
    if abs(log_density.sum() - total) > 1e-6 * max(1.0, abs(total)):
        raise RuntimeError(
            f"GaussianHMM: the filter's log densities sum to "
            f"{log_density.sum()!r}, hmmlearn's score is {total!r}."
        )
    weights = predicted[n_train:]
    forecast = mixture(weights / weights.sum(-1, keepdims=True),
                       np.broadcast_to(means, weights.shape),
                       np.broadcast_to(std, weights.shape))
    return forecast, {"means": means.tolist(), "std": std.tolist(),
                      "transmat": transition.tolist(),
                      "monitor_converged": bool(model.monitor_.converged)}


def windows(values, window):
    """`(len(values) - window, window, 1)`: row `i` holds the `window`
    values before `values[window + i]`."""
    idx = np.arange(window)[None, :] + np.arange(len(values) - window)[:, None]
    return values[idx][..., None]


def gaussian_nll(y_true, y_pred):
    """The Gaussian head's loss: `-log N(y; mean, softplus(raw) + 1e-4)`."""
    from keras import ops

    y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1,))
    mean = y_pred[:, 0]
    scale = ops.softplus(y_pred[:, 1]) + 1e-4
    z = (y_true - mean) / scale
    return 0.5 * math.log(2 * math.pi) + ops.log(scale) + 0.5 * z * z


def lstm_forecasts(y, n_train, seed=0, units=32, window=20, epochs=30,
                   batch_size=32, learning_rate=1e-3):
    """A Keras `LSTM(units)` with a Gaussian density head.

    The series is standardized by the training mean and deviation; the
    network reads the last `window` values and outputs the next value's
    mean and (softplus) scale; trained with `model.fit` on the negative
    log-likelihood of the training targets (Adam), then run over the test
    windows (which read the observed values) at the trained weights.
    """
    import keras

    if n_train - window < 2:
        raise ValueError(f"the training part ({n_train} values) is too "
                         f"short for windows of {window}")
    keras.utils.set_random_seed(seed)
    mean, std = float(y[:n_train].mean()), float(y[:n_train].std())
    z = (y - mean) / std
    x_all = windows(z, window)
    target = z[window:]
    split = n_train - window
    model = keras.Sequential([
        keras.Input((window, 1)),
        keras.layers.LSTM(units),
        keras.layers.Dense(2),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=gaussian_nll)
    history = model.fit(x_all[:split], target[:split], epochs=epochs,
                        batch_size=batch_size, verbose=0, shuffle=True)
    raw = np.asarray(model.predict(x_all[split:], verbose=0,
                                   batch_size=256), np.float64)
    loc = mean + std * raw[:, 0]
    scale = std * (np.logaddexp(0.0, raw[:, 1]) + 1e-4)
    return _gaussians(loc, scale), {
        "epochs": epochs, "final_train_loss": float(
            history.history["loss"][-1])}


# ------------------------------------------ the package's forecaster
def regime_forecaster_forecasts(y, n_train, seed=0, units=(0, 32),
                                num_states=2, quick=False):
    """`keras_mrnn.regime_forecaster`: an LSTM summary of `[x, |x|]`, then a
    `RegimeMixture` head of `num_states` Student-t regimes (order 0),
    filtered exactly, trained on the negative log predictive density.

    The series is standardized by the training part; the head's regime
    model starts from EM (`adapt` on the training part), then the whole
    model trains with Adam on windows of the first 85 % of the training
    part, stopping early on the rest (one sequence from half a window
    before it, its loss the mean negative log predictive density). With
    several `units` (0: the regime model alone), each is trained and the
    one with the best validation loss is kept: no test value is read.
    Then the model runs over the whole series at the trained weights, and
    its output at t - 1 is the forecast of step t.
    """
    import keras

    import keras_mrnn
    from keras_mrnn.switches import HMMSwitch

    mean, std = float(y[:n_train].mean()), float(y[:n_train].std())
    z = ((y - mean) / std).astype("float32")
    n_fit = int(0.85 * n_train)
    window = min(250, max(10, n_fit // 4))
    stride = max(window // 10, 1)
    train = np.stack([z[s:s + window] for s in
                      range(0, n_fit - window + 1, stride)])[..., None]
    validation = z[None, max(0, n_fit - window // 2):n_train, None]
    best = None
    for width in units:
        keras.utils.set_random_seed(seed)
        model = keras_mrnn.regime_forecaster(
            units=width, num_states=num_states, seed=seed,
            switch=HMMSwitch(order=0, distribution="student_t"))
        head = model.layers[-1]
        head.adapt(z[None, :n_train, None], restarts=1 if quick else 4,
                   seed=0)
        model.compile(keras.optimizers.Adam(3e-3))
        stop = keras.callbacks.EarlyStopping(
            "val_loss", patience=8, restore_best_weights=True)
        history = model.fit(train, validation_data=(validation,),
                            epochs=2 if quick else 200, batch_size=16,
                            verbose=0, callbacks=[stop])
        loss = float(np.min(history.history["val_loss"]))
        if best is None or loss < best[0]:
            best = (loss, width, model, len(history.history["loss"]))
    loss, width, model, epochs = best
    head = model.layers[-1]
    outputs = model.predict(z[None, :, None], verbose=0)[0]
    standardized = head.distribution(outputs[n_train - 1:-1])[:, 0]
    forecast = mixture(standardized.weights, mean + std * standardized.loc,
                       std * standardized.scale, df=standardized.df)
    return forecast, {"units": width, "validation_loss": loss,
                      "epochs": epochs, "window": window,
                      "df": np.asarray(head.switch.get_parameters()["df"])
                      .ravel().tolist()}


# --------------------------------------------------------- the registry
class Model:
    """One row of the benchmark: a key, a label, the function that gives
    `(forecast, info)` (or None to skip), whether it is run per seed and
    the modules it needs."""

    def __init__(self, key, label, run, seeded=False, needs=()):
        self.key, self.label, self.run = key, label, run
        self.seeded, self.needs = seeded, tuple(needs)


MODEL_KEYS = ("gaussian", "ar", "garch_normal", "garch_t",
              "markov_regression", "markov_autoregression", "hmmlearn",
              "lstm", "lstm_same_head", "regime_forecaster")


def build_models(args, name):
    quick = args.quick
    reps = 2 if quick else 20
    mar_order = args.mar_order
    if mar_order is None:
        mar_order = 4 if name == "gnp" else 1
    epochs = args.epochs if args.epochs is not None else (2 if quick else 30)
    return [
        Model("gaussian", "Gaussian (training)",
              lambda y, n, s: gaussian_forecasts(y, n)),
        Model("ar", f"AR(p<={args.ar_maxlag}) AIC",
              lambda y, n, s: ar_forecasts(y, n, maxlag=args.ar_maxlag),
              needs=("statsmodels",)),
        Model("garch_normal", "GARCH(1,1) normal",
              lambda y, n, s: garch_forecasts(y, n, "normal"),
              needs=("arch",)),
        Model("garch_t", "GARCH(1,1) Student-t",
              lambda y, n, s: garch_forecasts(y, n, "t"), needs=("arch",)),
        Model("markov_regression", "MarkovRegression(2)",
              lambda y, n, s: markov_regression_forecasts(
                  y, n, seed=0, search_reps=reps),
              needs=("statsmodels",)),
        Model("markov_autoregression",
              f"MarkovAutoregression(2, order {mar_order})",
              lambda y, n, s: markov_autoregression_forecasts(
                  y, n, order=mar_order, seed=0, search_reps=reps),
              needs=("statsmodels",)),
        Model("hmmlearn", "GaussianHMM(2) (hmmlearn)",
              lambda y, n, s: hmm_forecasts(
                  y, n, seed=0, n_iter=20 if quick else 200),
              needs=("hmmlearn",)),
        Model("lstm", "LSTM(32), Gaussian head",
              lambda y, n, s: lstm_forecasts(y, n, seed=s, epochs=epochs),
              seeded=True, needs=("keras",)),
        Model("lstm_same_head", "LSTM(32), the same head (K=1)",
              lambda y, n, s: regime_forecaster_forecasts(
                  y, n, seed=s, units=(4,) if quick else (32,),
                  num_states=1, quick=quick),
              seeded=True, needs=("keras",)),
        Model("regime_forecaster", "regime_forecaster (K=2)",
              lambda y, n, s: regime_forecaster_forecasts(
                  y, n, seed=s, units=(0, 4) if quick else (0, 32),
                  quick=quick),
              seeded=True, needs=("keras",)),
    ]


def run_model(model, y, n_train, seeds):
    """Runs one model (per seed when seeded): its JSON entry, or
    `(None, reason)` when skipped."""
    missing = [m for m in model.needs if importlib.util.find_spec(m) is None]
    if missing:
        return None, (f"{', '.join(missing)} not installed (pip install "
                      f"\".[benchmarks]\")")
    y_test = y[n_train:]
    runs = []
    for seed in (seeds if model.seeded else [None]):
        start = time.perf_counter()
        try:
            out = model.run(y, n_train, seed)
        except Exception as error:  # a peer that cannot fit this series
            return None, f"failed: {type(error).__name__}: {error}"
        if out is None:
            return None, "not yet in this run"
        forecast, info = out
        if forecast.batch_shape != y_test.shape:
            raise RuntimeError(
                f"{model.label}: forecast batch_shape {forecast.batch_shape}"
                f" for {y_test.shape} test steps.")
        from keras_mrnn import forecasting

        scores = forecasting.score(forecast, y_test, level=LEVEL)
        entry = dict(scores, wall_s=time.perf_counter() - start)
        if model.seeded:
            entry = dict(seed=seed, **entry)
        entry["info"] = info
        runs.append(entry)
    if not model.seeded:
        return dict(label=model.label, **runs[0]), None
    keys = ("log_score", "crps", "coverage", "rmse")
    mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    return dict(
        label=model.label, **mean,
        log_score_std=float(np.std([r["log_score"] for r in runs])),
        wall_s=float(np.mean([r["wall_s"] for r in runs])),
        wall_s_total=float(np.sum([r["wall_s"] for r in runs])),
        seeds=runs), None


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# ------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="PATH",
                        help="a CSV file with a header row")
    source.add_argument("--series", choices=SERIES,
                        help="a shipped series: gnp (Hamilton's GNP "
                             "growth) or sp500 (daily S&P 500 returns, "
                             "needs arch)")
    parser.add_argument("--column", metavar="NAME",
                        help="the CSV column to forecast (with --csv)")
    parser.add_argument("--transform", choices=TRANSFORMS, default=None,
                        help="how the CSV column becomes the series "
                             "(default none; the shipped series are "
                             "already growth rates / returns)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="seeds of the seeded models (default 3)")
    parser.add_argument("--json", metavar="OUT",
                        help="also write the JSON report here")
    parser.add_argument("--quick", action="store_true",
                        help="short series, tiny fits (a smoke test)")
    parser.add_argument("--models", nargs="+", choices=MODEL_KEYS,
                        metavar="KEY",
                        help="run only these models, by key: "
                             f"{', '.join(MODEL_KEYS)} (default all)")
    parser.add_argument("--ar-maxlag", type=int, default=4,
                        help="largest AR order AIC may choose (default 4)")
    parser.add_argument("--mar-order", type=int, default=None,
                        help="MarkovAutoregression's order (default 4 on "
                             "gnp, else 1)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="LSTM training epochs (default 30; 2 quick)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1 (got {args.seeds})")
    if args.ar_maxlag < 0:
        parser.error(f"--ar-maxlag must be >= 0 (got {args.ar_maxlag})")
    if args.mar_order is not None and args.mar_order < 1:
        parser.error(f"--mar-order must be >= 1 (got {args.mar_order})")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1 (got {args.epochs})")
    if args.csv is not None:
        if args.column is None:
            parser.error("--csv needs --column NAME")
        transform = args.transform or "none"
        try:
            values, missing = read_csv_column(args.csv, args.column)
            y = transform_series(values, transform)
        except OSError as error:
            parser.error(f"cannot read --csv {args.csv}: {error}")
        except KeyError as error:
            parser.error(str(error.args[0]))
        except ValueError as error:
            parser.error(str(error))
        name = f"{os.path.basename(args.csv)}:{args.column}"
        description = (f"column {args.column!r} of {args.csv}, transform "
                       f"{transform}")
        if missing:
            description += f", {missing} missing value(s) dropped"
    else:
        if args.column is not None:
            parser.error("--column goes with --csv, not --series")
        if args.transform not in (None, "none"):
            parser.error(f"--transform goes with --csv: the shipped series "
                         f"{args.series} is already a growth rate/return")
        transform = "none"
        name = args.series
        if name == "sp500" and importlib.util.find_spec("arch") is None:
            parser.error("--series sp500 needs arch (pip install "
                         "\".[benchmarks]\")")
        y, description = load_series(name)
    if not np.isfinite(y).all():
        parser.error("the series has values that are not finite")
    if args.quick and len(y) > QUICK_LENGTH:
        y = y[-QUICK_LENGTH:]
        description += f"; --quick: its last {QUICK_LENGTH} values"
    if len(y) < MIN_LENGTH:
        parser.error(f"the series has {len(y)} values; the benchmark needs "
                     f"at least {MIN_LENGTH}")
    return args, name, transform, np.ascontiguousarray(y), description


def main(argv=None):
    started = time.perf_counter()
    args, name, transform, y, description = parse_args(argv)
    # Imported (with Keras) before the models' clocks start.
    import keras_mrnn.forecasting  # noqa: F401

    n = len(y)
    n_train = split_point(n)
    seeds = list(range(args.seeds))
    print(f"Series {name}: {description}.")
    print(f"{n} values: fit on the first {n_train}, one-step-ahead "
          f"forecasts of the last {n - n_train} at parameters fixed after "
          f"fitting; seeded models over seeds {seeds}.")
    results, skipped, labels = {}, {}, {}
    for model in build_models(args, name):
        if args.models and model.key not in args.models:
            continue
        labels[model.key] = model.label
        entry, reason = run_model(model, y, n_train, seeds)
        if entry is None:
            skipped[model.key] = reason
        else:
            results[model.key] = entry
    print(f"\nTest scores over {n - n_train} steps (log score: nats per "
          f"step, higher is better; CRPS: lower is better; "
          f"{LEVEL:.0%} central interval coverage; RMSE of the mean; "
          f"seeded models: mean over {len(seeds)} seed(s), wall time per "
          f"seed):")
    print(f"  {'model':34s} {'log score':>9s} {'CRPS':>8s} "
          f"{'cov90':>6s} {'RMSE':>8s} {'wall s':>7s}")
    for key, entry in results.items():
        label = entry["label"]
        if "seeds" in entry:
            label += f" x{len(entry['seeds'])}"
        print(f"  {label:34s} {entry['log_score']:9.3f} {entry['crps']:8.4f}"
              f" {entry['coverage']:6.3f} {entry['rmse']:8.4f}"
              f" {entry['wall_s']:7.1f}")
    for key, reason in skipped.items():
        print(f"  {labels[key]:34s} skipped: {reason}")
    for key, entry in results.items():
        if "seeds" in entry:
            per_seed = ", ".join(f"{run['log_score']:.3f}"
                                 for run in entry["seeds"])
            print(f"  {entry['label']}: log score per seed {per_seed}")
    backend = None
    if importlib.util.find_spec("keras") is not None:
        import keras

        backend = keras.backend.backend()
    report = _json_safe({
        "benchmark": "forecast", "series": name, "description": description,
        "keras_backend": backend,
        "transform": transform, "n": n, "n_train": n_train,
        "n_test": n - n_train, "level": LEVEL, "quick": args.quick,
        "seeds": seeds, "models": results, "skipped": skipped,
        "wall_s": time.perf_counter() - started,
    })
    print(f"Total wall time {report['wall_s']:.1f} s.")
    line = json.dumps(report)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(line)
    return report


if __name__ == "__main__":
    main()
