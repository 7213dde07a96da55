"""keras_mrnn.forecasting: the mixture forecast and its scores, against SciPy.

NumPy/SciPy only (no Keras tensors): the densities, CDFs, moments and
quantiles against `scipy.stats` with the mixtures written out, the CRPS
closed forms against numerical integration of `(F(x) - 1{x >= y})^2`,
sampled moments against the exact ones (tolerances: 5 Monte Carlo
standard errors), the scores on hand cases, bad arguments, and the
module's docstring examples.
"""

import doctest
import warnings

import keras
import numpy as np
import pytest

import keras_mrnn
from keras_mrnn import forecasting
from keras_mrnn.forecasting import PredictiveMixture

scipy = pytest.importorskip("scipy")
from scipy import integrate, optimize, stats  # noqa: E402

# Batch of 4 three-component mixtures: different weights, locations and
# scales per member, Gaussian or Student-t (one df per component).
WEIGHTS = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [1 / 3] * 3,
                    [0.0, 0.25, 0.75]])
LOC = np.array([[-2.0, 0.0, 1.5], [0.5, -1.0, 3.0], [0.0, 0.1, -0.1],
                [4.0, -3.0, 0.0]])
SCALE = np.array([[0.5, 1.0, 2.0], [1.5, 0.3, 0.8], [1.0, 2.0, 0.5],
                  [1.0, 0.7, 1.2]])
DF = np.array([3.0, 7.5, 30.0])
Y = np.array([-1.3, 0.2, 2.7, -4.0])


def component(k, i, df):
    """Member i's component k as a frozen SciPy distribution."""
    if df is None:
        return stats.norm(LOC[i, k], SCALE[i, k])
    return stats.t(df[k], LOC[i, k], SCALE[i, k])


def written_out(i, df, method, x):
    """sum_k w_k * component_k.method(x)."""
    return sum(WEIGHTS[i, k] * getattr(component(k, i, df), method)(x)
               for k in range(3))


KINDS = {"gaussian": None, "student_t": DF}


@pytest.fixture(params=sorted(KINDS))
def kind(request):
    return request.param


def make(kind):
    return PredictiveMixture(WEIGHTS, LOC, SCALE, df=KINDS[kind])


# ------------------------------------------------------- against SciPy
def test_log_prob_prob_cdf_match_scipy(kind):
    forecast = make(kind)
    df = KINDS[kind]
    assert forecast.batch_shape == (4,) and forecast.num_components == 3
    assert forecast.components == kind
    expected_pdf = np.array([written_out(i, df, "pdf", Y[i])
                             for i in range(4)])
    expected_cdf = np.array([written_out(i, df, "cdf", Y[i])
                             for i in range(4)])
    np.testing.assert_allclose(forecast.log_prob(Y), np.log(expected_pdf),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(forecast.prob(Y), expected_pdf, rtol=1e-12)
    np.testing.assert_allclose(forecast.cdf(Y), expected_cdf, rtol=1e-12,
                               atol=1e-15)
    # Broadcasting: y (5, 1) against batch (4,).
    grid = np.linspace(-5, 5, 5)[:, None]
    assert forecast.log_prob(grid).shape == (5, 4)
    np.testing.assert_allclose(
        forecast.cdf(grid)[:, 2],
        [written_out(2, df, "cdf", x) for x in grid[:, 0]], rtol=1e-12)


def test_single_components_match_scipy():
    x = np.linspace(-4, 6, 11)
    gaussian = PredictiveMixture([1.0], [1.0], [2.0])
    assert gaussian.batch_shape == () and gaussian.num_components == 1
    np.testing.assert_allclose(gaussian.log_prob(x),
                               stats.norm.logpdf(x, 1.0, 2.0), rtol=1e-13)
    np.testing.assert_allclose(gaussian.cdf(x), stats.norm.cdf(x, 1.0, 2.0),
                               rtol=1e-13)
    student = PredictiveMixture([1.0], [1.0], [2.0], df=4.5)
    np.testing.assert_allclose(student.log_prob(x),
                               stats.t.logpdf(x, 4.5, 1.0, 2.0), rtol=1e-13)
    np.testing.assert_allclose(student.cdf(x),
                               stats.t.cdf(x, 4.5, 1.0, 2.0), rtol=1e-13)
    assert student.mean() == pytest.approx(1.0)
    assert student.variance() == pytest.approx(stats.t(4.5, 1, 2).var())


def test_mean_and_variance_match_scipy(kind):
    forecast = make(kind)
    df = KINDS[kind]
    for i in range(4):
        parts = [component(k, i, df) for k in range(3)]
        mean = sum(WEIGHTS[i, k] * parts[k].mean() for k in range(3))
        # Law of total variance, from SciPy's component moments.
        variance = sum(WEIGHTS[i, k] * (parts[k].var()
                                        + (parts[k].mean() - mean) ** 2)
                       for k in range(3))
        assert forecast.mean()[i] == pytest.approx(mean, rel=1e-12)
        assert forecast.variance()[i] == pytest.approx(variance, rel=1e-12)
    # And one member against numerical integration of the density.
    density = lambda x: written_out(1, df, "pdf", x)  # noqa: E731
    first = integrate.quad(lambda x: x * density(x), -np.inf, np.inf)[0]
    second = integrate.quad(lambda x: x * x * density(x), -np.inf,
                            np.inf, limit=200)[0]
    assert forecast.mean()[1] == pytest.approx(first, rel=1e-8)
    assert forecast.variance()[1] == pytest.approx(second - first ** 2,
                                                   rel=1e-7)


def test_heavy_tails_have_no_moments():
    forecast = PredictiveMixture([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]],
                                 [[0.0, 1.0]] * 3, [[1.0, 1.0]] * 3,
                                 df=[[1.5, 5.0], [0.8, 5.0], [5.0, 0.8]])
    np.testing.assert_allclose(forecast.mean()[0], 0.5)
    assert np.isinf(forecast.variance()[0])
    assert np.isnan(forecast.mean()[1]) and np.isnan(forecast.variance()[1])
    # A component of zero weight does not count.
    assert forecast.mean()[2] == 0.0
    assert forecast.variance()[2] == pytest.approx(5.0 / 3.0)


def test_quantile_matches_scipy(kind):
    forecast = make(kind)
    df = KINDS[kind]
    q = np.array([1e-6, 0.01, 0.05, 0.3, 0.5, 0.9, 0.999])
    result = forecast.quantile(q)
    assert result.shape == (7, 4)
    for i in range(4):
        for j, p in enumerate(q):
            root = optimize.brentq(
                lambda x: written_out(i, df, "cdf", x) - p, -1e4, 1e4,
                xtol=1e-14, rtol=4 * np.finfo(float).eps)
            assert abs(result[j, i] - root) < 1e-8
    # The mixture's CDF at its quantiles, and scalar q.
    np.testing.assert_allclose(forecast.cdf(result), np.broadcast_to(
        q[:, None], (7, 4)), rtol=1e-9, atol=1e-14)
    assert forecast.quantile(0.5).shape == (4,)
    np.testing.assert_array_equal(forecast.quantile([0.0, 1.0]),
                                  [[-np.inf] * 4, [np.inf] * 4])


def test_quantile_of_single_components_is_scipys_ppf():
    q = np.linspace(0.001, 0.999, 9)
    gaussian = PredictiveMixture([1.0], [3.0], [0.2])
    np.testing.assert_allclose(gaussian.quantile(q),
                               stats.norm.ppf(q, 3.0, 0.2), atol=1e-9)
    student = PredictiveMixture([1.0], [-1.0], [5.0], df=2.5)
    np.testing.assert_allclose(student.quantile(q),
                               stats.t.ppf(q, 2.5, -1.0, 5.0), atol=1e-8)


@pytest.mark.parametrize("q", [-0.1, 1.5, np.nan, [[0.5]]])
def test_quantile_rejects_bad_q(q):
    with pytest.raises(ValueError, match="`q`"):
        PredictiveMixture([1.0], [0.0], [1.0]).quantile(q)


# ------------------------------------------------------------------ CRPS
def crps_by_integration(forecast, y):
    """integral (F(x) - 1{x >= y})^2 dx with SciPy's quad (a scalar
    forecast), in theta where x = y + s tan(theta) (finite intervals: the
    heavy tails stay integrable), split at theta = 0 (x = y) and at each
    component's location +- 10^-2 .. 10^4 scales."""
    y = float(y)
    s = float(np.max(forecast.scale))
    offsets = np.geomspace(1e-2, 1e4, 25)
    offsets = np.concatenate([-offsets, [0.0], offsets])
    points = {0.0}
    for loc, scale in zip(np.ravel(forecast.loc), np.ravel(forecast.scale)):
        points.update(np.arctan((loc + scale * offsets - y) / s).tolist())
    points = sorted(points)
    edges = [-np.pi / 2] + [p for p in points if abs(p) < np.pi / 2] + [
        np.pi / 2]

    def left(theta):  # x < y: F(x)^2 dx
        x = y + s * np.tan(theta)
        return float(forecast.cdf(x)) ** 2 * s / np.cos(theta) ** 2

    def right(theta):  # x >= y: (1 - F(x))^2 dx
        x = y + s * np.tan(theta)
        return (1.0 - float(forecast.cdf(x))) ** 2 * s / np.cos(theta) ** 2

    total = 0.0
    with warnings.catch_warnings():
        # quad's roundoff warning next to theta = +-pi/2 (df < 1), where
        # the integrand is a 0 x inf limit: the sums still agree to 1e-12.
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for a, b in zip(edges[:-1], edges[1:]):
            if b <= a:
                continue
            total += integrate.quad(left if b <= 0 else right, a, b,
                                    limit=200, epsabs=1e-13,
                                    epsrel=1e-11)[0]
    return total


def test_crps_of_a_normal_is_the_closed_form():
    # CRPS(N(mu, s^2), y) = s (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)).
    mu, s = 0.7, 1.9
    y = np.array([-3.0, 0.0, 0.7, 2.5, 10.0])
    z = (y - mu) / s
    expected = s * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z)
                    - 1 / np.sqrt(np.pi))
    forecast = PredictiveMixture([1.0], [mu], [s])
    np.testing.assert_allclose(forecast.crps(y), expected, rtol=1e-13)
    # Two identical components are the same normal.
    twice = PredictiveMixture([0.4, 0.6], [mu, mu], [s, s])
    np.testing.assert_allclose(twice.crps(y), expected, rtol=1e-12)


@pytest.mark.parametrize("df", [None, 2.5, 40.0, 0.8])
def test_single_component_crps_matches_integration(df):
    forecast = PredictiveMixture([1.0], [0.5], [1.5], df=df)
    for y in (-6.0, 0.5, 1.7, 30.0):
        assert float(forecast.crps(y)) == pytest.approx(
            crps_by_integration(forecast, y), rel=1e-6)


def test_gaussian_mixture_crps_matches_integration():
    forecast = make("gaussian")
    values = forecast.crps(Y)
    for i in range(4):
        assert values[i] == pytest.approx(
            crps_by_integration(forecast[i], Y[i]), rel=1e-8)


def test_student_t_mixture_crps_matches_integration():
    forecast = make("student_t")
    values = forecast.crps(Y)
    for i in range(4):
        assert values[i] == pytest.approx(
            crps_by_integration(forecast[i], Y[i]), rel=1e-6)
    # Far-apart components of very different scales, heavy tails, and a
    # value far in a tail.
    odd = PredictiveMixture([0.5, 0.5], [0.0, 1000.0], [1.0, 0.01],
                            df=[1.2, 30.0])
    for y in (-50.0, 500.0, 1000.005):
        assert float(odd.crps(y)) == pytest.approx(
            crps_by_integration(odd, y), rel=1e-6)


def test_crps_t_with_huge_df_is_the_gaussian_closed_form():
    gaussian = make("gaussian")
    nearly = PredictiveMixture(WEIGHTS, LOC, SCALE, df=1e7)
    np.testing.assert_allclose(nearly.crps(Y), gaussian.crps(Y), rtol=1e-6)
    # np.inf components are Gaussian exactly.
    exact = PredictiveMixture(WEIGHTS, LOC, SCALE, df=np.inf)
    assert exact.components == "gaussian"
    np.testing.assert_allclose(exact.crps(Y), gaussian.crps(Y), rtol=1e-14)


def test_crps_is_infinite_where_it_diverges():
    forecast = PredictiveMixture([1.0], [0.0], [1.0], df=0.5)
    assert np.isinf(forecast.crps(0.0))


# -------------------------------------------------------------- sampling
@pytest.mark.parametrize("kind, df", [("gaussian", None),
                                      ("student_t", [6.0, 10.0, 8.0])])
def test_sampled_moments_match(kind, df):
    forecast = PredictiveMixture(WEIGHTS, LOC, SCALE, df=df)
    n = 200_000
    draws = forecast.sample(n, seed=3)
    assert draws.shape == (n, 4)
    mean, variance = forecast.mean(), forecast.variance()
    # Central fourth moments, exact: E[(d + s T)^4] per component with
    # E[T^2] = v, E[T^4] = m4 of the standard component.
    df_ = np.inf if df is None else np.asarray(df)
    v = np.where(np.isinf(df_), 1.0, df_ / (df_ - 2.0))
    m4 = np.where(np.isinf(df_), 3.0,
                  3.0 * df_ ** 2 / ((df_ - 2.0) * (df_ - 4.0)))
    d = LOC - mean[:, None]
    fourth = np.sum(WEIGHTS * (d ** 4 + 6 * d ** 2 * SCALE ** 2 * v
                               + SCALE ** 4 * m4), axis=1)
    # 5 Monte Carlo standard errors: of the mean sqrt(var / n), of the
    # sample variance sqrt((mu4 - var^2) / n).
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean),
                                 5 * np.sqrt(variance / n))
    np.testing.assert_array_less(np.abs(draws.var(0) - variance),
                                 5 * np.sqrt((fourth - variance ** 2) / n))


def test_sample_picks_components_by_weight_and_repeats():
    forecast = PredictiveMixture([0.2, 0.0, 0.8], [-100.0, 0.0, 100.0],
                                 [1.0, 1.0, 1.0])
    n = 50_000
    draws = forecast.sample(n, seed=0)
    assert draws.shape == (n,)
    share = np.mean(draws > 50)
    # Binomial: 5 standard errors.
    assert abs(share - 0.8) < 5 * np.sqrt(0.8 * 0.2 / n)
    assert not np.any(np.abs(draws) < 50)  # the zero-weight component
    np.testing.assert_array_equal(draws, forecast.sample(n, seed=0))
    assert not np.array_equal(draws[:100], forecast.sample(100, seed=1))
    rng = np.random.default_rng(7)
    assert forecast.sample(3, seed=rng).shape == (3,)


@pytest.mark.parametrize("num_samples, seed, error", [
    (0, None, ValueError), (-2, None, ValueError), (1.5, None, TypeError),
    (True, None, TypeError), (3, -1, ValueError), (3, 1.5, TypeError),
    (3, "1", TypeError),
])
def test_sample_rejects_bad_arguments(num_samples, seed, error):
    forecast = PredictiveMixture([1.0], [0.0], [1.0])
    with pytest.raises(error, match="num_samples|seed"):
        forecast.sample(num_samples, seed=seed)


# ---------------------------------------------------------------- scores
def test_scores_on_a_hand_case():
    # Four standard normal forecasts; the 90 % interval is +-1.6449.
    forecast = PredictiveMixture(np.ones((4, 1)), np.zeros((4, 1)),
                                 np.ones((4, 1)))
    y = np.array([0.0, 1.0, -1.5, 2.0])
    assert forecasting.interval_coverage(forecast, y) == 0.75
    assert forecasting.interval_coverage(forecast, y, level=0.5) == 0.25
    assert forecasting.interval_coverage(forecast, y, level=0.99) == 1.0
    assert forecasting.log_score(forecast, y) == pytest.approx(
        np.mean(stats.norm.logpdf(y)), rel=1e-14)
    assert forecasting.rmse(forecast, y) == pytest.approx(
        np.sqrt(np.mean(y ** 2)), rel=1e-14)
    z = y
    crps = z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) \
        - 1 / np.sqrt(np.pi)
    assert forecasting.crps(forecast, y) == pytest.approx(np.mean(crps),
                                                          rel=1e-13)
    scores = forecasting.score(forecast, y)
    assert list(scores) == ["log_score", "crps", "coverage", "rmse"]
    assert all(isinstance(v, float) for v in scores.values())
    assert scores["coverage"] == 0.75


def test_scores_of_a_list_equal_the_batch(kind):
    forecast = make(kind)
    steps = [forecast[i] for i in range(4)]
    assert steps[0].batch_shape == () and len(forecast) == 4
    batch = forecasting.score(forecast, Y)
    listed = forecasting.score(steps, list(Y))
    for name in batch:
        assert listed[name] == pytest.approx(batch[name], rel=1e-12)


def test_scores_reject_mismatched_arguments():
    forecast = make("gaussian")
    with pytest.raises(ValueError, match="batch_shape"):
        forecasting.log_score(forecast, Y[:3])
    with pytest.raises(ValueError, match="one value"):
        forecasting.crps([forecast[0], forecast[1]], Y)
    with pytest.raises(TypeError, match="PredictiveMixture"):
        forecasting.rmse(np.zeros(4), Y)
    with pytest.raises(ValueError, match="level"):
        forecasting.interval_coverage(forecast, Y, level=1.0)
    with pytest.raises(TypeError, match="level"):
        forecasting.score(forecast, Y, level="0.9")


# --------------------------------------------------------- the arguments
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(weights=[0.5, 0.5], loc=[0.0, 1.0, 2.0], scale=[1.0]),
     ValueError, "broadcast"),
    (dict(weights=[0.5, 0.5], loc=[0.0, 1.0], scale=[1.0, 0.0]),
     ValueError, "`scale` must be positive"),
    (dict(weights=[0.5, 0.5], loc=[0.0, 1.0], scale=[1.0, -2.0]),
     ValueError, "scale"),
    (dict(weights=[0.5, 0.4], loc=[0.0, 1.0], scale=[1.0, 1.0]),
     ValueError, "sum to 1"),
    (dict(weights=[1.2, -0.2], loc=[0.0, 1.0], scale=[1.0, 1.0]),
     ValueError, "non-negative"),
    (dict(weights=[0.5, 0.5], loc=[0.0, np.nan], scale=[1.0, 1.0]),
     ValueError, "`loc` must be finite"),
    (dict(weights=[0.5, 0.5], loc=[0.0, 1.0], scale=[1.0, 1.0], df=0.0),
     ValueError, "`df` must be positive"),
    (dict(weights=[0.5, 0.5], loc=[0.0, 1.0], scale=[1.0, 1.0],
          df=[3.0, -1.0]), ValueError, "df"),
    (dict(weights=[0.5, 0.5], loc=[0.0, 1.0], scale=[1.0, 1.0],
          df=[3.0, 4.0, 5.0]), ValueError, "broadcast"),
    (dict(weights="abc", loc=[0.0], scale=[1.0]), TypeError, "`weights`"),
    (dict(weights=[1.0], loc=[0.0], scale=[1.0], df=True), TypeError,
     "`df`"),
    (dict(weights=[1.0], loc=None, scale=[1.0]), TypeError, "`loc`"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        PredictiveMixture(**kwargs)


def test_weights_within_tolerance_are_renormalized():
    forecast = PredictiveMixture([0.5 + 4e-7, 0.5], [0.0, 1.0], [1.0, 1.0])
    assert forecast.weights.sum() == pytest.approx(1.0, abs=1e-15)
    assert not forecast.weights.flags.writeable


def test_indexing_and_repr():
    forecast = PredictiveMixture(np.full((2, 3, 2), 0.5), [0.0, 1.0],
                                 [1.0, 2.0], df=5.0)
    assert forecast.batch_shape == (2, 3)
    assert repr(forecast) == ("PredictiveMixture(batch_shape=(2, 3), "
                              "num_components=2, components='student_t')")
    assert forecast[1].batch_shape == (3,)
    assert forecast[1, 2].batch_shape == ()
    assert forecast[:, 0].batch_shape == (2,)
    np.testing.assert_array_equal(forecast[0, 1].df, [5.0, 5.0])
    with pytest.raises(IndexError):
        forecast[0, 1][0]
    assert forecast.log_prob(np.zeros((2, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="does not broadcast"):
        forecast.cdf(np.zeros(4))


# ------------------------------------------------------ the doc examples
def _doctests():
    finder = doctest.DocTestFinder()
    return sorted((t for t in finder.find(forecasting, globs={})
                   if t.examples), key=lambda t: t.name)


DOCTESTS = _doctests()


def test_every_public_name_is_documented_with_an_example():
    names = {t.name.split(".")[-1] for t in DOCTESTS}
    for name in forecasting.__all__:
        doc = getattr(forecasting, name).__doc__
        assert "Args:" in doc, name
        assert "Returns:" in doc or name == "PredictiveMixture", name
        assert name in names, name
    for method in ("log_prob", "prob", "cdf", "mean", "variance",
                   "quantile", "sample", "crps"):
        assert method in names, method


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example(test):
    # As tests/test_docstrings.py runs the package's other examples.
    test.globs = {"np": np, "keras": keras, "keras_mrnn": keras_mrnn}
    report = []
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.failed == 0, "".join(report)
