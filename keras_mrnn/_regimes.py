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

import numpy as np
from keras import ops

from keras_mrnn import _em
from keras_mrnn import _inference
from keras_mrnn import _validation as check
from keras_mrnn import switches


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
        model = self._regime_model(x, mask, "regime_probabilities")
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
            *self._regime_model(x, mask, "most_likely_regimes"))

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
            *self._regime_model(x, mask, "regime_log_likelihood"))

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
            if mask.shape != x.shape[:2]:
                raise ValueError(
                    f"Layer '{self.name}': `mask` must have shape (batch, "
                    f"time) = {x.shape[:2]}. Received shape {mask.shape}."
                )
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
        `(initial (K,), transition (K, K), log_likelihoods (N, T, K),
        mask)`, float64, in processing order; warns (once) when the switch
        was neither adapted nor trained."""
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
        compressed, _ = _inference.compress(x, mask)
        log_likelihoods = _inference.expand(
            switch.sequence_log_likelihoods(compressed), mask, 0.0)
        parameters = switch.get_parameters()
        return (parameters["initial"], parameters["transition"],
                log_likelihoods, mask)
