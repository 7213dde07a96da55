"""The hmm switch's model after the fact: `MarkovLSTM.adapt` and the
regime methods (private).

`MarkovLSTM` inherits them from `RegimeAnalysis`, so users call them on the
layer; they live here so that `markov_lstm.py` reads as a cell and a layer.
They ask the layer's `HMMSwitch` for its model (its emissions and
parameters), then run EM (`_em.fit`) or exact inference
(`_inference.hmm_filter`, `hmm_smoother`, `hmm_posterior_mode`,
`hmm_log_likelihood`), in NumPy.
"""

import warnings
from typing import NamedTuple

import numpy as np
from keras import ops

from keras_mrnn import _backend
from keras_mrnn import _em
from keras_mrnn import _inference
from keras_mrnn import _validation as check
from keras_mrnn import switches
from keras_mrnn.forecasting import PredictiveMixture


def _is_dataset(x):
    """Whether `x` is a `tf.data.Dataset` (without importing TensorFlow)."""
    return hasattr(x, "as_numpy_iterator")


def _dataset_inputs(name, method, dataset, mask):
    """The inputs of each batch of a dataset of `x` or `(x, ...)`, as a
    list; refuses a `mask` (a dataset cannot be paired with one) and
    batches of different lengths (their results could not be stacked)."""
    if mask is not None:
        raise ValueError(
            f"Layer '{name}': `{method}` takes no `mask` with a dataset: "
            "give arrays to pass a mask."
        )
    batches = [
        batch[0] if isinstance(batch, (tuple, list)) else batch
        for batch in dataset.as_numpy_iterator()
    ]
    lengths = {np.shape(b)[1] for b in batches if np.ndim(b) > 1}
    if len(lengths) > 1:
        raise ValueError(
            f"Layer '{name}': `{method}` received dataset batches of "
            f"different lengths {sorted(lengths)}: give arrays (padded, "
            "with a mask) instead."
        )
    return batches


class RegimeForecast(NamedTuple):
    """What `MarkovLSTM.forecast` returns (NumPy float64), for N sequences,
    H steps ahead, F features, K states.

    Attributes:
        regime_probabilities: `(N, H, K)`, `p(s_{T+h} | x_1, ..., x_T)`,
            exact (the filter at T times `P^h`).
        mean: `(N, H, F)`, the predictive mean of `x_{T+h}`.
        quantiles: `(Q, N, H, F)`, its quantiles at `quantile_levels`.
        quantile_levels: `(Q,)`.
        samples: `(num_samples, N, H, F)`, sample paths (ancestral
            sampling: a regime, then a value, fed back as the next lag).
        exact: `(H,)` booleans: whether `mean` and `quantiles` at that
            horizon are the closed-form mixture's (one step ahead always;
            every step with `order=0`), else the sample paths'.
        one_step: The predictive distribution of `x_{T+1}`, a
            `keras_mrnn.forecasting.PredictiveMixture` of batch shape
            `(N, F)` (each feature's marginal).
    """

    regime_probabilities: np.ndarray
    mean: np.ndarray
    quantiles: np.ndarray
    quantile_levels: np.ndarray
    samples: np.ndarray
    exact: np.ndarray
    one_step: object


class RegimeAnalysis:
    """Mixin of `MarkovLSTM`: fitting its hmm switch (`adapt`) and exact
    inference with it (`regime_probabilities`, `most_likely_regimes`,
    `regime_log_likelihood`). The methods need `switch="hmm"`."""

    # Whether the regime methods warned that the switch was not fitted.
    _warned_unadapted = False

    def adapt(self, x, mask=None, restarts=10, max_iter=100, seed=None):
        """Fits the hmm switch to the inputs by EM, before training.

        As Keras's preprocessing layers `adapt` to data: sets the
        `HMMSwitch`'s levels, AR coefficients, scales (or covariances) and
        transition matrix to the maximum-likelihood fit of its model to
        `x`, by expectation-maximization (Baum-Welch, whose M-step is a
        weighted least-squares regression) from `restarts` starts: the
        quantiles of the data's first principal component, then k-means
        clusterings and random persistent segmentations. The start with
        the best log-likelihood wins. The LSTMs are untouched; train them
        afterwards with `fit` (with `HMMSwitch(task_gradient=False)` the
        task's loss then leaves the fitted regimes alone). Builds the layer
        if it is not built yet.

        Args:
            x: Inputs `(batch, time, features)` (NumPy, a tensor, or a
                `tf.data.Dataset` of such batches or of `(x, ...)`
                tuples), as the layer will see them (standardized).
            mask: Optional boolean `(batch, time)`: masked steps are
                skipped, as the layer's filter skips them.
            restarts: Positive integer, the number of starts.
            max_iter: Positive integer, the EM iterations per start (a
                start stops earlier once its log-likelihood per step
                improves by less than 1e-8 nats).
            seed: Integer seed of the random starts, or `None`.

        Returns:
            The fitted model's log-likelihood of `x`, in nats: the sum of
            `log p(x_t | x_1, ..., x_{t-1})` over sequences and valid steps
            (what the layer's input likelihood term averages).

        Example:

        >>> process = keras_mrnn.datasets.MarkovSwitchingAR()
        >>> x, regimes = process.sample(50, 100, seed=0)
        >>> layer = keras_mrnn.MarkovLSTM(
        ...     8, num_states=3, switch="hmm", return_switches=True)
        >>> log_likelihood = layer.adapt(x, restarts=3, seed=0)
        >>> _, q, _ = layer(x)
        >>> nmi = keras_mrnn.datasets.normalized_mutual_information(
        ...     regimes, np.argmax(q, -1))
        >>> bool(nmi > 0.5)
        True
        """
        restarts = check.positive_int("restarts", restarts)
        max_iter = check.positive_int("max_iter", max_iter)
        seed = check.optional_seed("seed", seed)
        if _is_dataset(x):
            x = np.concatenate(
                _dataset_inputs(self.name, "adapt", x, mask), axis=0)
        x, mask = self._hmm_inputs(x, mask, "adapt")
        switch = self.cell.switch
        steps = x.shape[1] if mask is None else int(mask.sum(1).max())
        if steps <= switch.order:
            raise ValueError(
                f"Layer '{self.name}': `adapt` needs steps with all their "
                f"{switch.order} lags (HMMSwitch(order={switch.order})), but "
                f"the longest sequence has {steps} valid steps."
            )
        parameters, log_likelihood, _ = _em.fit(
            switch, x, mask, restarts, max_iter, seed)
        switch.set_parameters(**parameters)
        return log_likelihood

    # ------------------------------------------- the HMM after the fact
    def regime_probabilities(self, x, mask=None, smoothed=False):
        """The hmm switch's posterior over its states at every step.

        Exact HMM inference with the switch's current parameters (its
        filter does not read the LSTMs), from the start of each sequence:
        the filter `p(s_t | x_1, ..., x_t)`, which is `q_z(t)` of a call
        with `training=False`, or with `smoothed=True` the smoother
        `p(s_t | x_1, ..., x_T)` (forward-backward), which also uses the
        steps after t (statsmodels' `smoothed_marginal_probabilities`,
        hmmlearn's `predict_proba`).

        Before `adapt` (or training) the switch holds its initial
        parameters (levels at the quantiles of N(0, 1), unit scales, no
        autoregression, each state kept with probability 0.9): the results
        are then that arbitrary model's, not the data's, and the method
        warns once.

        Args:
            x: Inputs `(batch, time, features)`: NumPy, a tensor, or a
                `tf.data.Dataset` of such batches (or of `(x, ...)`
                tuples).
            mask: Optional boolean `(batch, time)` (not with a dataset).
                Masked steps are skipped as by the layer, so padding gives
                the unpadded sequence's values; at a masked step the result
                repeats the last valid step's (uniform before the first),
                as the layer's `q_z(t)` does (with the default
                `zero_output_for_mask=False`).
            smoothed: Whether to condition on the whole sequence.

        Returns:
            NumPy float `(batch, time, num_states)`, rows summing to 1, in
            the layer's processing order (reversed with `go_backwards`).

        Example:

        >>> layer = keras_mrnn.MarkovLSTM(8, num_states=2, switch="hmm")
        >>> x = np.random.normal(size=(3, 20, 1))
        >>> _ = layer.adapt(x, restarts=2, seed=0)
        >>> layer.regime_probabilities(x, smoothed=True).shape
        (3, 20, 2)
        """
        smoothed = check.boolean("smoothed", smoothed)
        if _is_dataset(x):
            return self._per_batch(self.regime_probabilities, x, mask,
                                   smoothed=smoothed)
        model = self._regime_model(x, mask, "regime_probabilities")[0]
        if smoothed:
            return _inference.hmm_smoother(*model).smoothed
        return _inference.hmm_filter(*model).filtered

    def most_likely_regimes(self, x, mask=None):
        """The most likely sequence of the hmm switch's states (Viterbi).

        `argmax_{s_1..s_T} p(s_1, ..., s_T | x_1, ..., x_T)` under the
        switch's HMM (hmmlearn's `predict`, tfp's `posterior_mode`), from
        the start of each sequence.

        Before `adapt` (or training) it warns once, as
        `regime_probabilities` does.

        Args:
            x: Inputs `(batch, time, features)`, as `regime_probabilities`
                takes them.
            mask: Optional boolean `(batch, time)`; masked steps are
                skipped and get -1.

        Returns:
            NumPy int `(batch, time)`, states in `[0, num_states)` (-1 at
            masked steps), in the layer's processing order.

        Example:

        >>> layer = keras_mrnn.MarkovLSTM(8, num_states=2, switch="hmm")
        >>> x = np.random.normal(size=(3, 20, 1))
        >>> _ = layer.adapt(x, restarts=2, seed=0)
        >>> layer.most_likely_regimes(x).shape
        (3, 20)
        """
        if _is_dataset(x):
            return self._per_batch(self.most_likely_regimes, x, mask)
        return _inference.hmm_posterior_mode(
            *self._regime_model(x, mask, "most_likely_regimes")[0])

    def regime_log_likelihood(self, x, mask=None):
        """`log p(x_1, ..., x_T)` of each sequence under the switch's HMM.

        The sum over valid steps of the log-evidence
        `log p(x_t | x_1, ..., x_{t-1})` that `input_likelihood_weight`
        averages into the loss (hmmlearn's `score`, per sequence). Not
        statsmodels' `llf` of a similar model: statsmodels conditions on
        the first `order` observations and starts from the chain's
        stationary distribution; this scores every step from a uniform
        start. Warns once before `adapt` (see `regime_probabilities`).

        Args:
            x: Inputs `(batch, time, features)`, as `regime_probabilities`
                takes them.
            mask: Optional boolean `(batch, time)`; masked steps are
                skipped.

        Returns:
            NumPy float `(batch,)`, in nats.

        Example:

        >>> layer = keras_mrnn.MarkovLSTM(8, num_states=2, switch="hmm")
        >>> x = np.random.normal(size=(3, 20, 1))
        >>> _ = layer.adapt(x, restarts=2, seed=0)
        >>> layer.regime_log_likelihood(x).shape
        (3,)
        """
        if _is_dataset(x):
            return self._per_batch(self.regime_log_likelihood, x, mask)
        return _inference.hmm_log_likelihood(
            *self._regime_model(x, mask, "regime_log_likelihood")[0])

    def _per_batch(self, method, dataset, mask, **kwargs):
        batches = _dataset_inputs(self.name, method.__name__, dataset, mask)
        return np.concatenate(
            [method(batch, **kwargs) for batch in batches], axis=0)

    def _hmm_inputs(self, x, mask, method):
        """Checks `x` and `mask` for the hmm switch's methods and returns
        them as NumPy (float64, zeros at masked steps; bool), in the
        layer's processing order (reversed with `go_backwards`); builds the
        layer if needed."""
        switch = self.cell.switch
        if not isinstance(switch, switches.HMMSwitch):
            raise ValueError(
                f"Layer '{self.name}': `{method}` needs the hmm switch "
                "(switch='hmm' or keras_mrnn.switches.HMMSwitch(...)); this "
                f"layer's switch is {switch!r}."
            )
        x = np.asarray(ops.convert_to_numpy(x), dtype="float64")
        if x.ndim != 3:
            raise ValueError(
                f"Layer '{self.name}': `{method}` expects `x` of shape "
                f"(batch, time, features). Received shape {x.shape}."
            )
        if mask is not None:
            mask = np.asarray(ops.convert_to_numpy(mask)).astype(bool)
            check.mask_shape(self.name, mask.shape, x.shape)
        valid = np.ones(x.shape[:2], bool) if mask is None else mask
        if not valid.any():
            raise ValueError(
                f"Layer '{self.name}': `{method}` received no valid step "
                f"(x of shape {x.shape}, everything masked)."
            )
        bad = ~np.isfinite(x) & valid[..., None]
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"Layer '{self.name}': `x` must be finite on its valid "
                f"steps; it holds {int(bad.sum())} NaN or infinite values, "
                f"the first at index {where}: {x[where]!r}."
            )
        if not self.built:
            self.build((None, None, x.shape[-1]))
        elif switch.input_dim != x.shape[-1]:
            raise ValueError(
                f"Layer '{self.name}' was built for {switch.input_dim} "
                f"features; `{method}` received x with {x.shape[-1]} (shape "
                f"{x.shape})."
            )
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        if mask is not None:
            x = np.where(mask[..., None], x, 0.0)
        return x, mask

    def _regime_model(self, x, mask, method):
        """The switch's HMM on `x`, as the inference functions take it:
        `((initial (K,), transition (K, K), log_likelihoods (N, T, K),
        mask), compressed, lengths)`, float64, in processing order, with
        the inputs' valid steps moved to the front of each row
        (`_inference.compress`); warns (once) when the switch was neither
        adapted nor trained."""
        x, mask = self._hmm_inputs(x, mask, method)
        switch = self.cell.switch
        if not self._warned_unadapted and switch.is_at_initial_parameters():
            self._warned_unadapted = True
            warnings.warn(
                f"Layer '{self.name}': `{method}` uses the hmm switch's "
                "initial parameters (levels at the quantiles of N(0, 1), "
                "unit scales, no autoregression, staying with probability "
                f"{switch.INITIAL_STAY}): it was neither adapted nor trained. "
                "Fit it first with `layer.adapt(x)` (EM), or train the "
                "model.", UserWarning, stacklevel=3)
        compressed, lengths = _inference.compress(x, mask)
        log_likelihoods = _inference.expand(
            switch.sequence_log_likelihoods(compressed), mask, 0.0)
        parameters = switch.get_parameters()
        return ((parameters["initial"], parameters["transition"],
                 log_likelihoods, mask), compressed, lengths)

    # ------------------------------------------------------- forecasts
    def forecast(self, x, horizon=1, num_samples=1000,
                 quantiles=(0.05, 0.5, 0.95), mask=None, seed=None):
        """Forecasts the inputs under the hmm switch's model, as
        distributions (a Markov-switching VAR forecast).

        After the filter has read each sequence, the next step's regime is
        `p(s_{T+1} | x_1..x_T) = q_T P` and the next value is the mixture of
        the states' emissions, weighted by it: exact one step ahead. H
        steps ahead the regime probabilities are `q_T P^h` (exact); the
        values are mixtures again with `order=0` (exact), and otherwise
        come from sample paths (sample the regime, sample the value, feed
        it back as a lag).

        Args:
            x: Inputs `(batch, time, features)`, the history of each
                sequence, as `regime_probabilities` takes them (not a
                dataset).
            horizon: Positive integer H, the number of steps ahead.
            num_samples: Positive integer, the sample paths per sequence.
            quantiles: Levels in (0, 1) of the returned quantiles.
            mask: Optional boolean `(batch, time)`; the forecast starts
                after each sequence's last valid step.
            seed: Integer seed of the sample paths, or `None`.

        Returns:
            A `RegimeForecast`: regime probabilities, predictive mean,
            quantiles and sample paths of every future step, and the
            one-step predictive distribution.

        Example:

        >>> process = keras_mrnn.datasets.MarkovSwitchingAR()
        >>> x, _ = process.sample(20, 100, seed=0)
        >>> layer = keras_mrnn.MarkovLSTM(4, num_states=3, switch="hmm")
        >>> _ = layer.adapt(x, restarts=2, seed=0)
        >>> result = layer.forecast(x[:2], horizon=5, num_samples=200, seed=1)
        >>> result.regime_probabilities.shape, result.samples.shape
        ((2, 5, 3), (200, 2, 5, 1))
        >>> float(result.one_step.log_prob(0.0)[0, 0]) < 0
        True
        """
        horizon, num_samples, levels, seed = check_forecast_arguments(
            horizon, num_samples, quantiles, seed)
        if self.go_backwards:
            raise ValueError(
                f"Layer '{self.name}': `forecast` forecasts forward in "
                "time; this layer reads its sequences backwards "
                "(go_backwards=True).")
        model, compressed, lengths = self._regime_model(x, mask, "forecast")
        transition = model[1]
        switch = self.cell.switch
        short = np.flatnonzero(lengths < max(switch.order, 1))
        if short.size:
            raise ValueError(
                f"Layer '{self.name}': `forecast` needs at least "
                f"{max(switch.order, 1)} valid steps per sequence (the lags "
                f"of HMMSwitch(order={switch.order})); sequence {short[0]} "
                f"has {lengths[short[0]]}.")
        filtered = _inference.hmm_filter(*model).filtered[:, -1]
        # p(s_{T+h} | x_1..x_T) = q_T P^h.
        probabilities = future_regimes(filtered @ transition, transition,
                                       horizon)

        n, _, features = compressed.shape
        k = switch.num_states
        order = switch.order
        dtype = _backend.widest_float()
        params = switch.parameters(dtype)
        numpy = {name: ops.convert_to_numpy(value).astype("float64")
                 for name, value in params.items()}
        if switch.covariance == "diagonal":
            tril = np.exp(numpy["log_scale"])[..., None] * np.eye(features)
        else:
            tril = numpy["scale_tril"]
        tril = np.broadcast_to(tril, (k, features, features))
        # Each feature's marginal scale under each state.
        scale = np.sqrt(np.sum(tril ** 2, axis=-1))              # (K, F)

        def means(lags):
            """The states' emission means `(..., K, F)` after `lags`."""
            if order == 0:
                return np.broadcast_to(numpy["level"],
                                       lags.shape[:-1] + (k, features))
            lags_tensor = ops.convert_to_tensor(lags.astype(dtype))
            observed = ops.ones(lags.shape[:-1] + (order,), dtype=dtype)
            return ops.convert_to_numpy(switch.emission_mean(
                params, lags_tensor, observed)).astype("float64")

        # The last `order` valid steps of each sequence, latest first.
        rows = np.arange(n)
        lags = np.concatenate(
            [compressed[rows, lengths - i] for i in range(1, order + 1)],
            axis=-1) if order else np.zeros((n, 0))

        def mixture(weights, loc):
            """Each feature's marginal mixture: batch (N, F)."""
            return PredictiveMixture(
                weights=weights[:, None, :],
                loc=np.swapaxes(loc, -1, -2),
                scale=np.broadcast_to(scale.T, (n, features, k)))

        one_step = mixture(probabilities[:, 0], means(lags))

        # Sample paths: a regime, then a value, fed back as the next lag.
        rng = np.random.default_rng(seed)
        state = categorical(rng, np.broadcast_to(
            probabilities[:, 0], (num_samples, n, k)))
        path_lags = np.broadcast_to(lags, (num_samples,) + lags.shape)
        samples = np.empty((num_samples, n, horizon, features))
        for h in range(horizon):
            if h:
                state = categorical(rng, transition[state])
            loc = np.take_along_axis(
                means(path_lags), state[..., None, None], axis=-2)[..., 0, :]
            noise = rng.standard_normal((num_samples, n, features))
            value = loc + np.einsum("snij,snj->sni", tril[state], noise)
            samples[:, :, h] = value
            if order:
                path_lags = np.concatenate(
                    [value, path_lags[..., :-features]], axis=-1)

        # With order 0 every step's values are a mixture of the same
        # components: closed form too.
        exact = [one_step] + [
            mixture(probabilities[:, h], means(lags)) if order == 0 else None
            for h in range(1, horizon)]
        return summarize(probabilities, samples, levels, exact)


def future_regimes(first, transition, horizon):
    """`(N, H, K)`: the regime probabilities of the H future steps, from
    those of the first `(N, K)` and the transition matrix."""
    probabilities = [first]
    for _ in range(1, horizon):
        probabilities.append(probabilities[-1] @ transition)
    return np.stack(probabilities, axis=1)


def summarize(probabilities, samples, levels, exact):
    """A `RegimeForecast` from the regime probabilities, the sample paths
    `(S, N, H, F)`, the quantile levels and, per horizon, the closed-form
    `PredictiveMixture` of batch `(N, F)` where there is one (else None):
    its mean and quantiles replace the samples' there."""
    mean = samples.mean(axis=0)
    quantile_values = np.quantile(samples, levels, axis=0)  # (Q, N, H, F)
    for h, distribution in enumerate(exact):
        if distribution is not None:
            mean[:, h] = distribution.mean()
            quantile_values[:, :, h] = distribution.quantile(levels)
    return RegimeForecast(
        probabilities, mean, quantile_values, levels, samples,
        np.array([d is not None for d in exact]), exact[0])


def check_forecast_arguments(horizon, num_samples, quantiles, seed):
    """The forecasts' common arguments, checked: `(horizon, num_samples,
    levels, seed)`."""
    levels = np.atleast_1d(np.asarray(quantiles, "float64"))
    if levels.ndim != 1 or not np.all((levels > 0) & (levels < 1)):
        raise ValueError(
            "Argument `quantiles` must be levels in (0, 1). Received: "
            f"quantiles={quantiles!r}.")
    return (check.positive_int("horizon", horizon),
            check.positive_int("num_samples", num_samples), levels,
            check.optional_seed("seed", seed))


def categorical(rng, probabilities):
    """One draw per row of `probabilities` `(..., K)`."""
    u = rng.random(probabilities.shape[:-1])[..., None]
    k = probabilities.shape[-1]
    return np.minimum((u > np.cumsum(probabilities, -1)).sum(-1), k - 1)
