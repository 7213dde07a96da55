"""benchmarks/forecast.py: the peers' forecasts on hand cases, the CSV path,
an end-to-end --quick run and argparse's errors.

Peers whose package is not installed (statsmodels, arch, hmmlearn: the
`benchmarks` extra) are skipped, as the benchmark skips them.
"""

import importlib.util
import json
import math
import os

import numpy as np
import pytest
from _helpers import ROOT, last_json_line, run_python, slow

from keras_mrnn import forecasting

SCRIPT = os.path.join(ROOT, "benchmarks", "forecast.py")


def _load():
    spec = importlib.util.spec_from_file_location("forecast_benchmark",
                                                  SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load()

# A 12-point series: the first 9 to fit, the last 3 to test.
Y12 = np.array([0.3, 1.1, 0.4, -0.6, 0.9, 1.8, 1.2, 0.1, -0.4, 0.7, 1.5,
                0.2])


def normal_scores(mean, std, y):
    """The four scores of N(mean, std^2) forecasts, from the formulas."""
    z = (y - mean) / std
    log = -0.5 * math.log(2 * math.pi) - np.log(std) - 0.5 * z ** 2
    phi = np.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.array([math.erf(v / math.sqrt(2)) for v in z]))
    crps = std * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))
    return {
        "log_score": float(np.mean(log)),
        "crps": float(np.mean(crps)),
        "coverage": float(np.mean((cdf >= 0.05) & (cdf <= 0.95))),
        "rmse": float(np.sqrt(np.mean((y - mean) ** 2))),
    }


def assert_scores(forecast, y, expected):
    scores = forecasting.score(forecast, y)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, rel=1e-10, abs=1e-12), \
            name


def test_split_is_the_first_75_percent():
    assert bench.split_point(12) == 9
    assert bench.split_point(135) == 101
    assert bench.split_point(3000) == 2250


def test_gaussian_peer_by_hand():
    n_train = bench.split_point(len(Y12))
    forecast, info = bench.gaussian_forecasts(Y12, n_train)
    train = Y12[:n_train]
    mean = sum(train) / len(train)
    std = math.sqrt(sum((v - mean) ** 2 for v in train) / len(train))
    assert forecast.batch_shape == (3,)
    assert info["mean"] == pytest.approx(mean) and info["std"] == \
        pytest.approx(std)
    assert_scores(forecast, Y12[n_train:],
                  normal_scores(np.full(3, mean), std, Y12[n_train:]))


def test_ar1_peer_by_hand():
    pytest.importorskip("statsmodels")
    n_train = bench.split_point(len(Y12))
    forecast, info = bench.ar_forecasts(Y12, n_train, lags=1)
    assert info["lags"] == [1]
    # OLS of y_t on (1, y_{t-1}) over the training pairs; the error
    # variance is the residual sum of squares over the number of pairs.
    x, target = Y12[:n_train - 1], Y12[1:n_train]
    design = np.stack([np.ones_like(x), x], axis=1)
    (c, phi), *_ = np.linalg.lstsq(design, target, rcond=None)
    sigma2 = float(np.sum((target - c - phi * x) ** 2) / len(target))
    assert info["sigma2"] == pytest.approx(sigma2, rel=1e-10)
    mean = c + phi * Y12[n_train - 1:-1]  # from the observed test values
    np.testing.assert_allclose(forecast.mean(), mean, rtol=1e-10)
    assert_scores(forecast, Y12[n_train:],
                  normal_scores(mean, math.sqrt(sigma2), Y12[n_train:]))


def test_ar_order_chosen_by_aic():
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(0)
    y = np.zeros(400)
    for t in range(2, 400):
        y[t] = 0.6 * y[t - 1] - 0.3 * y[t - 2] + rng.normal()
    _, info = bench.ar_forecasts(y, 300, maxlag=4)
    assert info["lags"] == [1, 2]


def test_garch_continues_the_variance_recursion_through_the_test():
    pytest.importorskip("arch")
    rng = np.random.default_rng(1)
    n, mu, omega, alpha, beta = 400, 0.1, 0.1, 0.15, 0.8
    y, variance = np.empty(n), omega / (1 - alpha - beta)
    for t in range(n):
        y[t] = mu + math.sqrt(variance) * rng.normal()
        variance = omega + alpha * (y[t] - mu) ** 2 + beta * variance
    n_train = bench.split_point(n)
    forecast, info = bench.garch_forecasts(y, n_train, "normal")
    p = info["params"]
    # The fitted model's in-sample variance at the last training step,
    # then the recursion at the fixed parameters over the observed values.
    from arch import arch_model

    fitted = arch_model(y, mean="Constant", vol="GARCH", p=1, q=1,
                        rescale=False).fit(last_obs=n_train, disp="off")
    np.testing.assert_allclose(list(fitted.params), list(p.values()))
    h = float(np.asarray(fitted.conditional_volatility)[n_train - 1]) ** 2
    expected = []
    for t in range(n_train, n):
        h = (p["omega"] + p["alpha[1]"] * (y[t - 1] - p["mu"]) ** 2
             + p["beta[1]"] * h)
        expected.append(h)
    np.testing.assert_allclose(forecast.variance(), expected, rtol=1e-5)
    np.testing.assert_allclose(forecast.mean(), p["mu"])
    t_forecast, t_info = bench.garch_forecasts(y, n_train, "t")
    nu = t_info["params"]["nu"]
    assert t_forecast.components == "student_t"
    np.testing.assert_allclose(t_forecast.df, nu)
    assert np.all(np.isfinite(t_forecast.variance()))


def test_markov_switching_mixtures_equal_statsmodels_llf_obs():
    # The peers raise unless log_prob equals llf_obs to 1e-6; here also
    # against the mixture written out for the first test step.
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(2)
    regime = np.cumsum(rng.random(240) < 0.05) % 2
    y = np.where(regime == 0, 0.5 + 0.6 * rng.normal(size=240),
                 -1.0 + 1.5 * rng.normal(size=240))
    n_train = bench.split_point(len(y))
    forecast, info = bench.markov_regression_forecasts(y, n_train,
                                                       search_reps=0)
    assert forecast.batch_shape == (len(y) - n_train,)
    assert info["max_gap_to_llf_obs"] <= 1e-6
    assert np.allclose(forecast.weights.sum(-1), 1.0)
    forecast, info = bench.markov_autoregression_forecasts(
        y, n_train, order=2, search_reps=0)
    assert forecast.num_components == 2 ** 3
    assert info["max_gap_to_llf_obs"] <= 1e-6


def test_hmmlearn_mixture_is_its_forward_filter():
    pytest.importorskip("hmmlearn")
    rng = np.random.default_rng(3)
    regime = np.cumsum(rng.random(200) < 0.05) % 2
    y = np.where(regime == 0, 1.0, -1.0) + 0.5 * rng.normal(size=200)
    n_train = bench.split_point(len(y))
    forecast, info = bench.hmm_forecasts(y, n_train, n_iter=30)
    # The predicted regime probabilities by hand: filtered_{t-1} @ A.
    means, std = np.array(info["means"]), np.array(info["std"])
    transition = np.array(info["transmat"])
    log_density = forecast.log_prob(y[n_train:])
    first = forecast.weights[0]
    assert first.sum() == pytest.approx(1.0)
    # One step of the filter from step n_train's prediction.
    density = first * np.exp(-0.5 * ((y[n_train] - means) / std) ** 2) / (
        std * math.sqrt(2 * math.pi))
    assert log_density[0] == pytest.approx(math.log(density.sum()))
    np.testing.assert_allclose(forecast.weights[1],
                               density / density.sum() @ transition,
                               rtol=1e-10)


def write_csv(path, prices, missing_row=None):
    with open(path, "w") as f:
        f.write("# a comment line\n")
        f.write("date,price,volume\n")
        for i, price in enumerate(prices):
            cell = "" if i == missing_row else f"{price:.6f}"
            f.write(f"2020-01-{i:03d},{cell},{100 + i}\n")


def test_csv_path_and_absent_peers(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(4)
    prices = 100 * np.exp(np.cumsum(0.01 * rng.normal(size=90)))
    path = tmp_path / "prices.csv"
    write_csv(path, prices, missing_row=5)
    out = tmp_path / "report.json"
    # As if arch and hmmlearn were not installed: skipped with a note.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(bench.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("arch", "hmmlearn")
                        else find_spec(name, *a))
    # The Keras models other than the LSTM run in test_quick_runs_end_to_end
    # (seconds of tracing each): here the rows of the CSV's checks.
    report = bench.main(["--csv", str(path), "--column", "price",
                         "--transform", "logdiff100", "--quick",
                         "--seeds", "2", "--json", str(out), "--models",
                         "gaussian", "garch_normal", "garch_t", "hmmlearn",
                         "lstm"])
    printed = capsys.readouterr().out
    assert json.loads(printed.strip().splitlines()[-1]) == report
    assert json.loads(out.read_text()) == report
    assert report["n"] == 88  # 90 prices, one missing, one lost to diff
    assert report["n_train"] == 66 and report["n_test"] == 22
    assert report["transform"] == "logdiff100"
    assert set(report["skipped"]) == {"garch_normal", "garch_t", "hmmlearn"}
    for reason in report["skipped"].values():
        assert "not installed" in reason
    assert set(report["models"]) == {"gaussian", "lstm"}  # --models
    y = 100 * np.diff(np.log(np.delete(np.round(prices, 6), 5)))
    gaussian = report["models"]["gaussian"]
    n_train = report["n_train"]
    expected = normal_scores(np.full(22, y[:n_train].mean()),
                             y[:n_train].std(), y[n_train:])
    for name, value in expected.items():
        assert gaussian[name] == pytest.approx(value, rel=1e-6)
    lstm = report["models"]["lstm"]
    assert [run["seed"] for run in lstm["seeds"]] == [0, 1]
    assert lstm["log_score"] == pytest.approx(
        np.mean([run["log_score"] for run in lstm["seeds"]]))
    for entry in report["models"].values():
        assert math.isfinite(entry["log_score"]) and entry["crps"] > 0
        assert 0 <= entry["coverage"] <= 1 and entry["wall_s"] >= 0


def test_every_model_has_a_key():
    args, name, *_ = bench.parse_args(["--series", "gnp"])
    assert [m.key for m in bench.build_models(args, name)] == list(
        bench.MODEL_KEYS)


@slow
def test_quick_runs_end_to_end(tmp_path):
    # The shipped GNP series, every installed peer, as a user runs it.
    out = tmp_path / "gnp.json"
    result = run_python(SCRIPT, "--series", "gnp", "--quick", "--seeds",
                        "1", "--json", str(out), timeout=300)
    report = last_json_line(result.stdout)
    assert json.loads(out.read_text()) == report
    assert report["series"] == "gnp" and report["n"] == 135
    assert report["n_test"] == 34
    assert "log score" in result.stdout and "cov90" in result.stdout
    expected = {"gaussian": None, "lstm": "keras", "lstm_same_head": "keras",
                "regime_forecaster": "keras", "ar": "statsmodels",
                "markov_regression": "statsmodels",
                "markov_autoregression": "statsmodels",
                "garch_normal": "arch", "garch_t": "arch",
                "hmmlearn": "hmmlearn"}
    for key, module in expected.items():
        if module is None or importlib.util.find_spec(module):
            assert key in report["models"], key
        else:
            assert "not installed" in report["skipped"][key]
    assert set(report["models"]) | set(report["skipped"]) == set(
        bench.MODEL_KEYS)
    # --quick: the regime forecaster with and without an LSTM(4), the
    # better on validation kept; the same head with one regime.
    forecaster = report["models"]["regime_forecaster"]["seeds"]
    assert [run["seed"] for run in forecaster] == [0]
    assert forecaster[0]["info"]["units"] in (0, 4)
    same_head = report["models"]["lstm_same_head"]["seeds"][0]["info"]
    assert same_head["units"] == 4 and len(same_head["df"]) == 1
    if "markov_autoregression" in report["models"]:
        info = report["models"]["markov_autoregression"]["info"]
        assert info["order"] == 4 and info["max_gap_to_llf_obs"] <= 1e-6
    # The hand-checkable peer: the training Gaussian of GNP growth.
    from keras_mrnn.datasets import load_gnp

    y = load_gnp()[0]
    expected = normal_scores(np.full(34, y[:101].mean()), y[:101].std(),
                             y[101:])
    assert report["models"]["gaussian"]["log_score"] == pytest.approx(
        expected["log_score"], rel=1e-9)
    assert report["models"]["gaussian"]["log_score"] == pytest.approx(
        -1.580, abs=5e-4)  # REFERENCES.md


@pytest.mark.parametrize("args, message", [
    (["--transform", "bad"], "invalid choice: 'bad'"),
    (["--column", "nope"], "column 'nope' is not in"),
    ([], "--csv needs --column"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--models", "gaussian", "arima"], "invalid choice: 'arima'"),
])
def test_bad_arguments_are_argparse_errors(tmp_path, args, message):
    path = tmp_path / "prices.csv"
    write_csv(path, np.linspace(100, 120, 30))
    argv = ["--csv", str(path)]
    if "--column" not in args and args != []:
        argv += ["--column", "price"]
    result = run_python(SCRIPT, *argv, *args, check=False, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "usage:" in result.stderr and message in result.stderr


def test_shipped_series_take_no_transform():
    result = run_python(SCRIPT, "--series", "gnp", "--transform", "diff",
                        check=False, timeout=60)
    assert result.returncode == 2
    assert "--transform goes with --csv" in result.stderr
