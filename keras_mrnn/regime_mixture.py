"""The next step's distribution as a mixture over regimes, filtered exactly.

`RegimeMixture` is a forecasting head: it reads a sequence `x` (and,
optionally, a deterministic summary `h` of its past, an LSTM's outputs)
and returns, at every step t, the predictive distribution of `x_{t+1}`: a
mixture over the K regimes of an `HMMSwitch`'s model, weighted by
`p(s_{t+1} = k | x_1, ..., x_t)`. The components are the switch's
emissions (its levels, AR terms and scales), shifted at each step by a
linear read of `h_t`; because `h` depends on the past values only, the
forward filter over the regimes is the exact posterior of the model that
forecasts, and the loss it adds, the negative log predictive density, is
that model's exact likelihood.
"""

import keras
import numpy as np
from keras import ops

from keras_mrnn import _em
from keras_mrnn import _validation as check
from keras_mrnn import switches
from keras_mrnn._regimes import categorical
from keras_mrnn._regimes import check_forecast_arguments
from keras_mrnn._regimes import future_regimes
from keras_mrnn._regimes import summarize
from keras_mrnn.forecasting import PredictiveMixture


@keras.saving.register_keras_serializable(package="keras_mrnn")
class RegimeMixture(keras.layers.Layer):
    """Predictive mixture over regimes: the distribution of the next step.

    At every step t the layer outputs the parameters of

        p(x_{t+1} | x_1..x_t) = sum_k p(s_{t+1} = k | x_1..x_t) f_k(x_{t+1})

    where the regimes `s_t` follow the switch's Markov chain and `f_k` is
    regime k's emission: Gaussian (or Student-t) around `mu_k + sum_i
    A_{k,i} (x_{t+1-i} - mu_k) + W_k h_t` with log-scale `log s_k + V_k
    h_t`. The regime probabilities come from the exact forward filter of
    that model (the `HMMSwitch` recursion, with its time-varying
    emissions), so with `likelihood_weight` the layer adds the exact
    negative log-likelihood `-mean_t log p(x_t | x_<t)` (nats per step) to
    the model's losses: train with `model.fit(x)` and no loss of your own.

    Special cases: `num_states=1` is a single Gaussian (or Student-t)
    density head on `h` (with an AR term of `order` lags); without `h` and
    with `order` lags it is the Markov-switching AR that statsmodels fits
    (`MarkovAutoregression`, with the mean of each regime's own level).
    `adapt` fits the switch's model (without `h`) by EM, a good start.

    Args:
        num_states: Positive integer K, the number of regimes.
        switch: The regime model, an `HMMSwitch` (or its config); default
            `HMMSwitch(order=1)`. Its `order`, `switching_ar`,
            `switching_scale` and `distribution` ("normal" or "student_t")
            apply; its covariance must be "diagonal".
        likelihood_weight: Non-negative float: adds this weight times the
            mean negative log predictive density of the inputs (over batch
            and steps, every step from the first) to the model's losses.

    Call arguments:
        inputs: `x` `(batch, time, features)`, or a list `[x, h]` with `h`
            `(batch, time, units)` a summary of `x_1..x_t` at each step
            that does not depend on later steps or on random draws (e.g.
            `keras.layers.LSTM(units, return_sequences=True)(x)`).

    Returns:
        `(batch, time, K * (1 + 2F))` (`K * (1 + 3F)` with Student-t
        components): at step t, the mixture for `x_{t+1}`: the log weights
        `(K)`, the locations `(K, F)`, the log scales `(K, F)` (and the
        degrees of freedom `(K, F)`), flattened; `distribution(outputs)`
        unpacks them into a `keras_mrnn.forecasting.PredictiveMixture`.

    Example:

    >>> x = np.random.normal(size=(4, 30, 1)).astype("float32")
    >>> inputs = keras.Input((None, 1))
    >>> h = keras.layers.LSTM(8, return_sequences=True)(inputs)
    >>> head = keras_mrnn.RegimeMixture(num_states=2)
    >>> model = keras.Model(inputs, head([inputs, h]))
    >>> model.compile("adam")
    >>> _ = model.fit(x, epochs=1, verbose=0)
    >>> forecast = head.distribution(model.predict(x, verbose=0))
    >>> forecast.batch_shape
    (4, 30, 1)
    """

    def __init__(self, num_states=2, switch=None, likelihood_weight=1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_states = check.positive_int("num_states", num_states)
        if switch is None:
            switch = switches.HMMSwitch(order=1)
        switch = switches.get(switch)
        if not isinstance(switch, switches.HMMSwitch):
            raise TypeError(
                "Argument `switch` of RegimeMixture must be an HMMSwitch (or "
                f"'hmm', or its config). Received: switch={switch!r}.")
        if switch.covariance != "diagonal":
            raise ValueError(
                "Argument `switch`: RegimeMixture needs "
                "HMMSwitch(covariance='diagonal') (its scales move with "
                f"the summary per feature). Received: switch={switch!r}.")
        self.switch = switch
        self.switch._attach(self)
        self.likelihood_weight = check.non_negative_float(
            "likelihood_weight", likelihood_weight)
        self.summary_units = None

    # The hook through which the switch makes its weights (as on
    # MarkovLSTMCell).
    def add_switch_weight(self, name, shape, kind=None, initializer=None):
        """Makes a weight of the switch on this layer, named
        `switch_{name}` (`kind` is not used: the hmm switch gives an
        initializer)."""
        return self.add_weight(shape=shape, name=f"switch_{name}",
                               initializer=initializer)

    def _shapes(self, input_shape):
        """`(x_shape, h_shape or None)` of the call's inputs."""
        if isinstance(input_shape, (list, tuple)) and input_shape and \
                isinstance(input_shape[0], (list, tuple)):
            if len(input_shape) != 2:
                raise ValueError(
                    "RegimeMixture takes `x` or `[x, h]`. Received "
                    f"{len(input_shape)} inputs of shapes {input_shape}.")
            return tuple(input_shape[0]), tuple(input_shape[1])
        return tuple(input_shape), None

    def build(self, input_shape):
        x_shape, h_shape = self._shapes(input_shape)
        if len(x_shape) != 3 or x_shape[-1] is None:
            raise ValueError(
                "RegimeMixture expects `x` of shape (batch, time, features) "
                f"with known features. Received shape {x_shape}.")
        if h_shape is not None and (len(h_shape) != 3
                                    or h_shape[-1] is None):
            raise ValueError(
                "RegimeMixture expects `h` of shape (batch, time, units) "
                f"with known units. Received shape {h_shape}.")
        features = x_shape[-1]
        self.switch.build(self.num_states, features)
        width = self.num_states * features
        if h_shape is not None:
            self.summary_units = h_shape[-1]
            # Zeros: the head starts as the switch's own model (adapt's).
            self.loc_kernel = self.add_weight(
                shape=(self.summary_units, width), name="loc_kernel",
                initializer="zeros")
            self.scale_kernel = self.add_weight(
                shape=(self.summary_units, width), name="scale_kernel",
                initializer="zeros")
        self.built = True

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._shapes(input_shape)
        return x_shape[:2] + (self._width(x_shape[-1]),)

    def _width(self, features):
        fields = 3 if self.switch.distribution == "student_t" else 2
        return self.num_states * (1 + fields * features)

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            x, h = inputs
        else:
            x, h = inputs, None
        if (h is None) != (self.summary_units is None):
            raise ValueError(
                f"Layer '{self.name}' was built "
                f"{'with' if self.summary_units else 'without'} a summary "
                "`h`; call it the same way.")
        switch, k = self.switch, self.num_states
        x = ops.cast(x, "float32")
        batch, steps, features = ops.shape(x)[0], ops.shape(x)[1], x.shape[-1]
        params = switch.parameters()
        order = switch.order
        # Positions t = 0..T: the emission of x_t (t < T) and the
        # components of x_{t+1} (output at t - 1) read the lags before t
        # and the summary h_{t-1} (zeros at t = 0).
        padded = ops.concatenate(
            [ops.zeros((batch, order, features)), x], axis=1)
        lags = None
        observed = None
        if order:
            # Lag i at position t: x_{t-i} = padded[t - i + order].
            lags = ops.concatenate(
                [padded[:, order - i:order - i + steps + 1]
                 for i in range(1, order + 1)], axis=-1)
            position = ops.expand_dims(
                ops.arange(steps + 1, dtype="float32"), -1)
            observed = ops.cast(
                position >= ops.arange(1, order + 1, dtype="float32"),
                "float32")
            observed = ops.broadcast_to(
                ops.expand_dims(observed, 0), (batch, steps + 1, order))
        components = dict(params)
        if h is not None:
            h = ops.cast(h, "float32")
            previous = ops.concatenate(
                [ops.zeros((batch, 1, h.shape[-1])), h], axis=1)
            shape = (batch, steps + 1, k, features)
            components["loc_offset"] = ops.reshape(
                ops.matmul(previous, ops.cast(self.loc_kernel, "float32")),
                shape)
            components["log_scale_offset"] = ops.reshape(
                ops.matmul(previous, ops.cast(self.scale_kernel, "float32")),
                shape)

        def at(values, part):
            """The positions 0..T-1 (`part="now"`) or 1..T (`"next"`)."""
            if values is None:
                return None
            return values[:, :steps] if part == "now" else values[:, 1:]

        now = {name: at(value, "now") if name.endswith("_offset") else value
               for name, value in components.items()}
        log_b = switch.log_likelihoods(now, x, at(lags, "now"),
                                       at(observed, "now"))    # (B, T, K)

        log_transition = params["log_transition"]

        # The carry is `[log p(s_{t+1} | x_<=t), log p(x_t | x_<t)]`, also
        # the step's output (Keras's scan on TensorFlow wants the two of
        # one shape).
        def step(carry, log_b_t):
            joint = carry[:, :k] + log_b_t
            evidence = ops.logsumexp(joint, axis=-1, keepdims=True)
            log_filtered = joint - evidence
            log_next = ops.logsumexp(
                ops.expand_dims(log_filtered, -1) + log_transition, axis=1)
            carry = ops.concatenate([log_next, evidence], axis=-1)
            return carry, carry

        initial = ops.concatenate([
            ops.broadcast_to(params["log_initial"], (batch, k)),
            ops.zeros((batch, 1))], axis=-1)
        _, stacked = ops.scan(step, initial, ops.transpose(log_b, (1, 0, 2)))
        stacked = ops.transpose(stacked, (1, 0, 2))
        log_weights, evidence = stacked[..., :k], stacked[..., k]
        if self.likelihood_weight > 0:
            self.add_loss(-self.likelihood_weight * ops.mean(evidence))

        following = {name: at(value, "next") if name.endswith("_offset")
                     else value for name, value in components.items()}
        loc = switch.emission_mean(following, at(lags, "next"),
                                   at(observed, "next"))
        loc = ops.broadcast_to(loc, (batch, steps, k, features))
        log_scale = ops.broadcast_to(
            params["log_scale"] + following.get("log_scale_offset", 0.0),
            (batch, steps, k, features))
        fields = [log_weights, ops.reshape(loc, (batch, steps, -1)),
                  ops.reshape(log_scale, (batch, steps, -1))]
        if switch.distribution == "student_t":
            fields.append(ops.reshape(ops.broadcast_to(
                params["df"], (batch, steps, k, features)),
                (batch, steps, -1)))
        return ops.concatenate(fields, axis=-1)

    def distribution(self, outputs):
        """The layer's outputs as a `keras_mrnn.forecasting.
        PredictiveMixture` of batch shape `outputs.shape[:-1] + (F,)`: each
        feature's marginal mixture (the features are independent within a
        regime).

        Args:
            outputs: The layer's outputs (a tensor or NumPy array).

        Returns:
            A `PredictiveMixture`.
        """
        outputs = np.asarray(ops.convert_to_numpy(outputs), "float64")
        k = self.num_states
        features = self.switch.input_dim
        leading = outputs.shape[:-1]

        def field(index):
            start = k + index * k * features
            values = outputs[..., start:start + k * features]
            return np.swapaxes(values.reshape(leading + (k, features)),
                               -1, -2)                      # (..., F, K)

        log_weights = outputs[..., :k]
        weights = np.exp(log_weights - log_weights.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        df = field(2) if self.switch.distribution == "student_t" else None
        return PredictiveMixture(
            weights=weights[..., None, :], loc=field(0),
            scale=np.exp(field(1)), df=df)

    def adapt(self, x, mask=None, restarts=10, max_iter=100, seed=None):
        """Fits the regime model (without the summary) by EM, before
        training: the switch's levels, AR terms, scales and transition
        matrix, as `MarkovLSTM.adapt` does (Gaussian emissions; Student-t
        degrees of freedom stay as they are). Builds the layer without a
        summary if it is not built.

        Args:
            x: NumPy `(batch, time, features)`.
            mask: Optional boolean `(batch, time)`.
            restarts: Positive integer, the EM starts.
            max_iter: Positive integer, the EM iterations per start.
            seed: Integer seed of the random starts, or `None`.

        Returns:
            The fitted Gaussian model's log-likelihood of `x`, in nats.
        """
        restarts = check.positive_int("restarts", restarts)
        max_iter = check.positive_int("max_iter", max_iter)
        seed = check.optional_seed("seed", seed)
        x = np.asarray(ops.convert_to_numpy(x), "float64")
        if x.ndim != 3:
            raise ValueError(
                f"Layer '{self.name}': `adapt` expects `x` of shape (batch, "
                f"time, features). Received shape {x.shape}.")
        if mask is not None:
            mask = np.asarray(mask, bool)
        if not self.built:
            self.build(x.shape)
        parameters, log_likelihood, _ = _em.fit(
            self.switch, x, mask, restarts, max_iter, seed)
        self.switch.set_parameters(**parameters)
        return log_likelihood

    def forecast(self, model, x, horizon=1, num_samples=1000,
                 quantiles=(0.05, 0.5, 0.95), seed=None):
        """Forecasts after the histories `x`, as distributions.

        One step ahead the forecast is the layer's last output, exact. H
        steps ahead the regime probabilities are `p(s_{T+1} | x_1..x_T)
        P^(h-1)` (exact), and the values come from sample paths: the model
        is run again on each history extended by its sampled values (a
        regime, then a value, fed back), so give it the recent history
        its summary needs, not more.

        Args:
            model: A Keras model from `x` to this layer's outputs.
            x: NumPy `(batch, time, features)`, the histories.
            horizon: Positive integer H, the number of steps ahead.
            num_samples: Positive integer, the sample paths per sequence.
            quantiles: Levels in (0, 1) of the returned quantiles.
            seed: Integer seed of the sample paths, or `None`.

        Returns:
            A `RegimeForecast`, as `MarkovLSTM.forecast` returns.

        Example:

        >>> x = np.random.normal(size=(2, 30, 1)).astype("float32")
        >>> inputs = keras.Input((None, 1))
        >>> head = keras_mrnn.RegimeMixture(num_states=2)
        >>> model = keras.Model(inputs, head(inputs))
        >>> result = head.forecast(model, x, horizon=3, num_samples=100,
        ...                        seed=0)
        >>> result.samples.shape, result.regime_probabilities.shape
        ((100, 2, 3, 1), (2, 3, 2))
        """
        horizon, num_samples, levels, seed = check_forecast_arguments(
            horizon, num_samples, quantiles, seed)
        x = np.asarray(ops.convert_to_numpy(x), "float32")
        if x.ndim != 3 or x.shape[1] < 1:
            raise ValueError(
                f"Layer '{self.name}': `forecast` expects histories `x` of "
                f"shape (batch, time, features), time >= 1. Received shape "
                f"{x.shape}.")
        n, _, features = x.shape
        transition = self.switch.get_parameters()["transition"]

        def last_step(histories):
            outputs = model.predict(histories, verbose=0,
                                    batch_size=min(len(histories), 4096))
            return self.distribution(outputs[:, -1])      # (batch, F)

        one_step = last_step(x)
        probabilities = future_regimes(one_step.weights[:, 0], transition,
                                       horizon)

        rng = np.random.default_rng(seed)
        paths = np.repeat(x[None], num_samples, 0).reshape(
            (num_samples * n,) + x.shape[1:])
        samples = np.empty((num_samples, n, horizon, features))
        for h in range(horizon):
            distribution = (last_step(paths) if h else _tile(
                one_step, num_samples))
            state = categorical(rng, distribution.weights[:, 0])
            pick = state[:, None, None]
            loc = np.take_along_axis(distribution.loc, pick, -1)[..., 0]
            scale = np.take_along_axis(distribution.scale, pick, -1)[..., 0]
            if distribution.df is None:
                noise = rng.standard_normal(loc.shape)
            else:
                df = np.broadcast_to(distribution.df, distribution.loc.shape)
                noise = rng.standard_t(
                    np.take_along_axis(df, pick, -1)[..., 0])
            value = loc + scale * noise                   # (S * N, F)
            samples[:, :, h] = value.reshape(num_samples, n, features)
            paths = np.concatenate(
                [paths, value[:, None].astype("float32")], axis=1)
        return summarize(probabilities, samples, levels,
                         [one_step] + [None] * (horizon - 1))

    def get_config(self):
        return {
            **super().get_config(),
            "num_states": self.num_states,
            "switch": keras.saving.serialize_keras_object(self.switch),
            "likelihood_weight": self.likelihood_weight,
        }


def _tile(distribution, times):
    """`distribution` of batch `(N, F)` repeated `times` times: `(times *
    N, F)`, the layout of the sample paths."""
    def tile(value):
        if value is None:
            return None
        value = np.broadcast_to(value, distribution.loc.shape[:-1] + (
            value.shape[-1],))
        return np.tile(value, (times,) + (1,) * (value.ndim - 1))

    return PredictiveMixture(
        weights=tile(distribution.weights), loc=tile(distribution.loc),
        scale=tile(distribution.scale), df=tile(distribution.df))


@keras.saving.register_keras_serializable(package="keras_mrnn")
class WithMagnitudes(keras.layers.Layer):
    """`[x, |x|]` on the last axis (what `regime_forecaster`'s LSTM reads;
    a layer, not a `Lambda`, so that `.keras` files load safely)."""

    def call(self, inputs):
        return ops.concatenate([inputs, ops.abs(inputs)], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2 * input_shape[-1],)


def regime_forecaster(features=1, units=32, num_states=2, switch=None,
                      magnitudes=True, seed=None, name="regime_forecaster"):
    """A forecasting model: an LSTM summary of the past, then a
    `RegimeMixture` head.

    The LSTM reads each step's values (and, with `magnitudes`, their
    absolute values, which make volatility easy to follow) and its outputs
    `h_t` shift each regime's location and log-scale; the head filters the
    regimes exactly and adds the negative log predictive density as the
    loss. `num_states=1` is an LSTM with a density head. Compile it with an
    optimizer only, `adapt` its head first, and fit on `x`.

    Args:
        features: Positive integer F, the number of features of `x`.
        units: Positive integer, the LSTM's units (0: no summary, the
            switch's Markov-switching AR alone).
        num_states: Positive integer K, the number of regimes.
        switch: The head's `HMMSwitch` (default `HMMSwitch(order=1)`).
        magnitudes: Whether the LSTM also reads `|x_t|`.
        seed: Integer seed of the LSTM's initial weights, or `None`.
        name: The model's name.

    Returns:
        A `keras.Model` from `(batch, time, F)` to the head's outputs; the
        head is `model.layers[-1]`.

    Example:

    >>> model = keras_mrnn.regime_forecaster(units=8, num_states=2)
    >>> head = model.layers[-1]
    >>> x = np.random.normal(size=(4, 50, 1)).astype("float32")
    >>> _ = head.adapt(x, restarts=2, seed=0)
    >>> model.compile(keras.optimizers.Adam(1e-3))
    >>> _ = model.fit(x, epochs=1, verbose=0)
    >>> head.distribution(model.predict(x, verbose=0)).batch_shape
    (4, 50, 1)
    """
    features = check.positive_int("features", features)
    units = check.non_negative_int("units", units)
    magnitudes = check.boolean("magnitudes", magnitudes)
    inputs = keras.Input((None, features))
    head = RegimeMixture(num_states=num_states, switch=switch)
    if not units:
        return keras.Model(inputs, head(inputs), name=name)
    summary_inputs = WithMagnitudes()(inputs) if magnitudes else inputs
    h = keras.layers.LSTM(units, return_sequences=True, seed=seed)(
        summary_inputs)
    return keras.Model(inputs, head([inputs, h]), name=name)
