"""The switches of the Markov LSTM: how the logits of `z_t` are computed.

A `MarkovLSTMCell` asks its switch for everything about `z_t` but the
sampling: the switch owns its weights (made on the cell, in `build`), its
recurrent states (after the cell's `h` and `c`), its per-step logits and,
for the switches that model the inputs, the log-evidence
`log p(x_t | x_1, ..., x_{t-1})` that `MarkovLSTM(input_likelihood_weight)`
adds to the loss. `MarkovLSTMCell(switch=...)` takes a string
(`"linear"`, `"predictive"`, `"hmm"`), a switch object, or a switch's
serialized config, as Keras's layers take initializers.

- `LinearSwitch`: logits linear in `x_t` and `h_{t-1}` (the reference's).
- `PredictiveSwitch`: Bayes' rule over per-state predictions of `x_t` from
  `h_{t-1}`.
- `HMMSwitch`: the forward filter of a hidden Markov model of the inputs
  with Gaussian vector-autoregressive regimes; `MarkovLSTM.adapt` fits it
  by EM before training.
"""

import math
import statistics

import keras
import numpy as np
from keras import initializers
from keras import ops

from keras_mrnn import _backend
from keras_mrnn import _distributions
from keras_mrnn import _inference
from keras_mrnn import _validation as check

COVARIANCES = ("diagonal", "full")
DISTRIBUTIONS = ("normal", "student_t")


class Switch:
    """Base class of the Markov LSTM's switches.

    A switch belongs to one cell: `MarkovLSTMCell` attaches it when it is
    constructed, and a switch already attached to another cell is refused
    (it would hold two cells' weights). The cell gives the switch its size
    when it is built (`build(num_states, input_dim)`), and the switch makes
    its weights through the cell's `add_switch_weight`. Subclasses set
    `name` (the string that selects them), `has_input_likelihood` and
    `reads_hidden_state`, and implement `state_size`, `build` (calling this
    one first), `project_inputs`, `logits` and `get_config`.
    """

    name = None
    # Whether `logits` gives log p(x_t | past), the input likelihood.
    has_input_likelihood = False
    # Whether the logits read h_{t-1} (the hmm switch's do not).
    reads_hidden_state = True
    # Weights that files saved before the switches were components hold
    # after the LSTMs' `bias` (by name): see `MarkovLSTMCell`'s loading.
    late_legacy_weights = ()

    def __init__(self):
        self._cell = None
        self._weight_names = []
        self.num_states = None
        self.input_dim = None

    # ----------------------------------------------------- cell plumbing
    def _attach(self, cell):
        if self._cell is not None and self._cell is not cell:
            raise ValueError(
                f"Argument `switch`: this {type(self).__name__} is already "
                f"the switch of cell '{self._cell.name}'; a switch holds "
                "one cell's weights. Give each cell its own switch, e.g. "
                f"`{type(self).__name__}.from_config(switch.get_config())`. "
                f"Received: switch={self!r} for cell '{cell.name}'."
            )
        self._cell = cell

    @property
    def cell(self):
        """The cell this switch belongs to."""
        return self._cell

    def _add_weight(self, name, shape, kind=None, initializer=None):
        """Makes weight `name` through the cell's `add_switch_weight`, and
        keeps it as the switch's attribute `name`."""
        weight = self._cell.add_switch_weight(name, shape, kind, initializer)
        setattr(self, name, weight)
        self._weight_names.append(name)
        return weight

    @property
    def weights(self):
        """The switch's weights, in the order they were made."""
        return [getattr(self, name) for name in self._weight_names]

    @property
    def weight_names(self):
        """The names of the switch's weights (its attributes), in order."""
        return list(self._weight_names)

    # --------------------------------------------------------- interface
    def state_size(self, num_states, input_dim=None):
        """The sizes of the switch's recurrent states (after `h`, `c`) for
        `num_states` states; `input_dim` is `None` before the cell is
        built."""
        return []

    def build(self, num_states, input_dim):
        """Takes the switch's size; subclasses then make their weights.

        Args:
            num_states: The cell's number of states K.
            input_dim: The number of input features.
        """
        self.num_states = int(num_states)
        self.input_dim = int(input_dim)

    def project_inputs(self, flat, inputs):
        """The input part of a step's logits.

        Args:
            flat: The (dropped-out) inputs flattened to 2-D, with a column
                of ones appended when the cell uses biases.
            inputs: The inputs as given, `(..., features)`, undropped.

        Returns:
            A tensor `(..., width)` handed to `logits` as `projected`.
        """
        return inputs

    def logits(self, projected, h, states):
        """The step's switch logits.

        Args:
            projected: This step's `project_inputs`.
            h: `h_{t-1}` (with the recurrent dropout mask applied).
            states: The switch's states (see `state_size`).

        Returns:
            `(logits, log_evidence, carry)`: float32 logits `(batch, K)`,
            float32 `log p(x_t | past)` `(batch,)` or `None`, and what
            `next_states` needs.
        """
        raise NotImplementedError

    def next_states(self, carry, z):
        """The switch's new states, from `logits`' carry and the switch
        `z_t` the cell chose."""
        return []

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(
            f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class _TransitionTerm:
    """The optional `z_{t-1} @ transition_kernel` term of the linear and
    predictive switches (`markov_transition=True`), `z_{t-1}` a state."""

    late_legacy_weights = ("bias", "transition_kernel")

    def __init__(self, markov_transition=False):
        super().__init__()
        self.markov_transition = check.boolean(
            "markov_transition", markov_transition)

    def state_size(self, num_states, input_dim=None):
        return [num_states] if self.markov_transition else []

    def _build_transition(self):
        if self.markov_transition:
            k = self.num_states
            self._add_weight("transition_kernel", (k, k),
                             initializer="zeros")

    def _prior_logits(self, h, states):
        logits = ops.matmul(h, self.recurrent_kernel)
        if self.markov_transition:
            logits = logits + ops.matmul(states[0], self.transition_kernel)
        return logits

    def next_states(self, carry, z):
        return [z] if self.markov_transition else []

    def get_config(self):
        return {"markov_transition": self.markov_transition}


@keras.saving.register_keras_serializable(package="keras_mrnn")
class LinearSwitch(_TransitionTerm, Switch):
    """The reference's switch: logits linear in `x_t` and `h_{t-1}`.

    `logits_t = x_t @ switch_kernel + h_{t-1} @ switch_recurrent_kernel +
    switch_bias` (plus `z_{t-1} @ transition_kernel` with
    `markov_transition=True`). `MarkovLSTMCell(switch="linear")` is
    `LinearSwitch()`. The weights take the cell's kernel, recurrent and
    bias initializers, regularizers and constraints.

    Args:
        markov_transition: If `True`, add a learned K x K term indexed by
            `z_{t-1}` (carried as a state after `h` and `c`), making
            `q(z_t | z_{t-1}, x_t, h_{t-1})` an explicit Markov chain.

    Example:

    >>> cell = keras_mrnn.MarkovLSTMCell(
    ...     8, num_states=3,
    ...     switch=keras_mrnn.switches.LinearSwitch(markov_transition=True))
    >>> cell.state_size
    [8, 8, 3]
    """

    name = "linear"

    def build(self, num_states, input_dim):
        super().build(num_states, input_dim)
        k, cell = self.num_states, self._cell
        self._add_weight("kernel", (input_dim, k), "kernel")
        self._add_weight("recurrent_kernel", (cell.units, k), "recurrent")
        if cell.use_bias:
            self._add_weight("bias", (k,), "bias")
        self._build_transition()

    def project_inputs(self, flat, inputs):
        kernel = self.kernel
        if self._cell.use_bias:
            # The bias rides in the matmul, as the cell's own (see there).
            kernel = ops.concatenate(
                [kernel, ops.expand_dims(self.bias, 0)], axis=0)
        leading = tuple(ops.shape(inputs)[:-1])
        return ops.reshape(
            ops.matmul(flat, kernel), leading + (self.num_states,))

    def logits(self, projected, h, states):
        return projected + self._prior_logits(h, states), None, None


@keras.saving.register_keras_serializable(package="keras_mrnn")
class PredictiveSwitch(_TransitionTerm, Switch):
    """Bayes' rule over per-state predictions of the input from `h_{t-1}`.

    Each state k predicts the step's input, `N(x_t; h_{t-1} @ W_k + b_k,
    diag(exp(log_scale_k))^2)` (`switch_mean_kernel`, `switch_mean_bias`,
    `switch_log_scale`), and the logits are the prior logits
    `h_{t-1} @ switch_recurrent_kernel + switch_bias` (plus the transition
    term) plus the log density of `x_t` under each state: `q_z(t)` is the
    posterior over which state's prediction explains the input. Its
    log-evidence is the inputs' likelihood under the mixture of
    predictions. Inputs should be roughly standardized (the predictions
    start near `N(b_k, 1)` with `b_k ~ N(0, 1)`).
    `MarkovLSTMCell(switch="predictive")` is `PredictiveSwitch()`.

    Args:
        markov_transition: As for `LinearSwitch`.

    Example:

    >>> layer = keras_mrnn.MarkovLSTM(
    ...     8, num_states=2, switch=keras_mrnn.switches.PredictiveSwitch())
    >>> layer.input_likelihood_weight
    1.0
    """

    name = "predictive"
    has_input_likelihood = True

    def build(self, num_states, input_dim):
        super().build(num_states, input_dim)
        k, cell = self.num_states, self._cell
        self._add_weight(
            "mean_kernel", (cell.units, k * input_dim), "kernel")
        # Random, so that the K predictions start apart.
        self._add_weight(
            "mean_bias", (k * input_dim,),
            initializer=initializers.RandomNormal(stddev=1.0, seed=cell.seed))
        self._add_weight("log_scale", (k, input_dim), initializer="zeros")
        self._add_weight("recurrent_kernel", (cell.units, k), "recurrent")
        if cell.use_bias:
            self._add_weight("bias", (k,), "bias")
        self._build_transition()

    def logits(self, projected, h, states):
        prior = self._prior_logits(h, states)
        if self._cell.use_bias:
            prior = prior + self.bias
        # Bayes' rule, in float32 (the density is): under mixed precision
        # the prior logits come in float16.
        prior = ops.cast(prior, "float32")
        features = self.log_scale.shape[-1]
        mean = ops.matmul(h, self.mean_kernel) + self.mean_bias
        mean = ops.reshape(
            ops.cast(mean, "float32"), (-1, self.num_states, features))
        scale = ops.exp(ops.cast(self.log_scale, "float32"))
        density = _backend.distributions().Normal(mean, scale)
        x = ops.expand_dims(ops.cast(projected, "float32"), 1)
        logits = prior + ops.sum(density.log_prob(x), axis=-1)
        log_evidence = ops.logsumexp(logits, axis=-1) - ops.logsumexp(
            prior, axis=-1)
        return logits, log_evidence, None


@keras.saving.register_keras_serializable(package="keras_mrnn")
class HMMSwitch(Switch):
    """The forward filter of a hidden Markov model of the inputs.

    `q_z(t)` is `p(s_t | x_1, ..., x_t)` of an HMM whose K states are
    Gaussian vector-autoregressive regimes, each around its own level:

        x_t | s_t = k  ~  N(mu_k + sum_{i=1..order} A_{k,i} (x_{t-i} - mu_k),
                            Sigma_k)

    and whose states follow a learned Markov chain `P = softmax(
    switch_transition)` (rows). The logits are `log(q_{t-1} @ P) +
    log N(x_t | k)` (normalized), the log-evidence `log p(x_t | x_<t)`;
    with the true parameters `q_z(t)` is the Bayes filter. The filter does
    not read `h_{t-1}`: the LSTMs cannot take the regime over from it.
    `MarkovLSTMCell(switch="hmm")` is `HMMSwitch()`: Gaussian AR(1) regimes
    with independent features, everything switching.

    The switch's states, after the cell's `h` and `c`: `q_{t-1}` (K), then
    with `order >= 1` the last `order` inputs `[x_{t-1}, ..., x_{t-order}]`
    (`order * features`), then with `order >= 2` the number of them
    observed so far (1 column, at most `order`). Zero states start a
    sequence: a uniform prior over the states. Steps whose lags are not all
    observed yet take the missing lags at the state's level; with
    `order=1` and diagonal covariance the first step is scored under the
    AR(1)'s stationary law, `N(mu_k, s_k^2 / (1 - a_k^2))`. Masked steps
    are skipped: the filter goes on from the last valid step, so left or
    right padding gives the unpadded filter.

    Weights (on the cell): `switch_level` `(K, F)`, mu (starts at the K
    quantiles of N(0, 1): standardize the inputs); with `order >= 1` and
    `covariance="diagonal"` `switch_persistence` `(K or 1, order * F)`, the
    diagonal AR coefficients through `tanh` (each in (-1, 1)), or with
    `covariance="full"` `switch_ar` `(K or 1, order * F, F)`, the AR
    matrices `[A_1; ...; A_order]` acting on the row of lags; with
    `"diagonal"` `switch_log_scale` `(K or 1, F)` (log s, floored at -7),
    with `"full"` `switch_scale_tril` `(K or 1, F, F)`, the Cholesky factor
    of Sigma (its strict lower triangle, and the log of its diagonal on the
    diagonal, floored at -7); and `switch_transition` `(K, K)`, the logits
    of P.

    Args:
        order: Non-negative integer, the number of lags of each regime's
            autoregression; 0 models each step as i.i.d. around its
            state's level.
        switching_ar: If `True` (default), each state has its own AR
            coefficients; `False` shares one set between all states (the
            levels always switch). Sharing them makes the states differ by
            level and scale only: for regimes of level in a persistent
            series (the business cycle) it keeps the states from splitting
            by persistence instead.
        switching_scale: If `True` (default), each state has its own scale
            (or covariance); `False` shares one.
        covariance: `"diagonal"` (default, the features are independent
            given the state, with diagonal AR coefficients) or `"full"` (a
            full covariance per state, or shared, and full `F x F` AR
            matrices): for regimes that differ in how the features move
            together.
        task_gradient: If `True` (default), the task's loss reaches the
            switch's weights through the switch `z_t` (the straight-through
            gradient) as well as the input likelihood. `False` stops it:
            the LSTMs still follow the switch's choice, but the switch
            learns from the input likelihood alone, as a regime model
            fitted to the inputs (after `MarkovLSTM.adapt`, training then
            leaves its fit in place but for the likelihood's own pull).
        distribution: `"normal"` (default) or `"student_t"`: each state's
            emission is Gaussian, or (diagonal covariance) Student-t per
            feature, with learned degrees of freedom `df` (weight
            `switch_log_df`, `log(df - 2)`, starting at 10): heavy tails,
            as daily returns have. `MarkovLSTM.adapt` fits the Gaussian
            model (EM) and leaves `df` as it is.

    Example:

    >>> switch = keras_mrnn.switches.HMMSwitch(
    ...     order=0, covariance="full", task_gradient=False)
    >>> layer = keras_mrnn.MarkovLSTM(8, num_states=2, switch=switch)
    >>> y = layer(np.random.normal(size=(4, 10, 2)).astype("float32"))
    >>> [tuple(w.shape) for w in switch.weights]
    [(2, 2), (2, 2, 2), (2, 2)]
    """

    name = "hmm"
    has_input_likelihood = True
    reads_hidden_state = False

    def __init__(self, order=1, switching_ar=True, switching_scale=True,
                 covariance="diagonal", task_gradient=True,
                 distribution="normal"):
        super().__init__()
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
            raise TypeError(
                "Argument `order` must be a non-negative integer. Received: "
                f"order={order!r} of type {type(order).__name__}.")
        if order < 0:
            raise ValueError(
                "Argument `order` must be a non-negative integer. "
                f"Received: order={order!r}.")
        self.order = int(order)
        self.switching_ar = check.boolean("switching_ar", switching_ar)
        self.switching_scale = check.boolean(
            "switching_scale", switching_scale)
        self.covariance = check.choice("covariance", covariance, COVARIANCES)
        self.task_gradient = check.boolean("task_gradient", task_gradient)
        self.distribution = check.choice("distribution", distribution,
                                         DISTRIBUTIONS)
        if self.distribution == "student_t" and self.covariance == "full":
            raise ValueError(
                "Arguments `distribution='student_t'` and "
                "`covariance='full'` cannot be combined: Student-t "
                "emissions are per feature (diagonal). Received: "
                "distribution='student_t', covariance='full'.")

    def get_config(self):
        return {
            "order": self.order,
            "switching_ar": self.switching_ar,
            "switching_scale": self.switching_scale,
            "covariance": self.covariance,
            "task_gradient": self.task_gradient,
            "distribution": self.distribution,
        }

    # The constants of the model's parameterization, used by the weights,
    # `set_parameters` and EM alike.
    #: The probability of staying in a state that a new switch (and each EM
    #: start) begins with.
    INITIAL_STAY = 0.9
    #: The scales stay above exp(-7) ~ 1e-3 (standardized inputs).
    LOG_SCALE_FLOOR = -7.0
    #: Diagonal AR coefficients are kept within (-0.99, 0.99) (stationary).
    AR_LIMIT = 0.99
    #: Student-t emissions: degrees of freedom above 2 (a finite variance),
    #: starting at 10.
    MIN_DF = 2.0
    INITIAL_DF = 10.0

    def state_size(self, num_states, input_dim=None):
        sizes = [num_states]
        if self.order >= 1 and input_dim is not None:
            sizes.append(self.order * input_dim)
            if self.order >= 2:
                sizes.append(1)
        return sizes

    def _weight_shapes(self):
        """`{weight name: shape}` for this configuration, in build order."""
        k, features, order = self.num_states, self.input_dim, self.order
        k_ar = k if self.switching_ar else 1
        k_scale = k if self.switching_scale else 1
        shapes = {"level": (k, features)}
        if order >= 1 and self.covariance == "diagonal":
            shapes["persistence"] = (k_ar, order * features)
        elif order >= 1:
            shapes["ar"] = (k_ar, order * features, features)
        if self.covariance == "diagonal":
            shapes["log_scale"] = (k_scale, features)
        else:
            shapes["scale_tril"] = (k_scale, features, features)
        shapes["transition"] = (k, k)
        if self.distribution == "student_t":
            shapes["log_df"] = (k_scale, features)
        return shapes

    def build(self, num_states, input_dim):
        super().build(num_states, input_dim)
        initial = self._weights_from_parameters(**self.initial_parameters())
        for name, shape in self._weight_shapes().items():
            self._add_weight(name, shape,
                             initializer=initializers.Constant(initial[name]))

    # --------------------------------- the mapping: parameters <-> weights
    def initial_parameters(self):
        """The parameters a new switch starts from (and EM's transition
        matrix at every start), as `get_parameters` returns them.

        The levels spread over the K quantiles of N(0, 1) (for standardized
        inputs: started together, one state can take two regimes and leave
        another unused, a local optimum gradient descent keeps); no
        autoregression; unit scales; each state kept with probability
        `INITIAL_STAY`.
        """
        self._check_built("initial_parameters")
        k, features, order = self.num_states, self.input_dim, self.order
        quantiles = [
            statistics.NormalDist().inv_cdf((i + 0.5) / k) for i in range(k)
        ]
        shapes = self._weight_shapes()
        stay = self.INITIAL_STAY if k > 1 else 1.0
        transition = np.full((k, k), (1.0 - stay) / max(k - 1, 1))
        np.fill_diagonal(transition, stay)
        if self.covariance == "diagonal":
            scale = np.ones(shapes["log_scale"])
        else:
            scale = np.broadcast_to(np.eye(features), shapes["scale_tril"])
        ar = None
        if order >= 1:
            ar = np.zeros(shapes["persistence" if self.covariance ==
                                "diagonal" else "ar"])
        parameters = dict(
            level=np.repeat(np.array(quantiles)[:, None], features, axis=1),
            ar=ar, scale=scale, transition=transition,
            initial=np.full(k, 1.0 / k))
        if self.distribution == "student_t":
            parameters["df"] = np.full(shapes["log_df"], self.INITIAL_DF)
        return parameters

    def _weights_from_parameters(self, level, ar=None, scale=None,
                                 transition=None, initial=None, df=None):
        """The raw weight values (float64 NumPy) of natural parameters: the
        inverse of `_parameters_from_weights`. Parameters given as `None`
        are left out."""
        raw = {"level": np.asarray(level, "float64")}
        if ar is not None and self.covariance == "diagonal":
            ar = np.clip(np.asarray(ar, "float64"), -self.AR_LIMIT,
                         self.AR_LIMIT)
            raw["persistence"] = np.arctanh(ar)
        elif ar is not None:
            raw["ar"] = np.asarray(ar, "float64")
        if scale is not None and self.covariance == "diagonal":
            raw["log_scale"] = np.log(np.asarray(scale, "float64"))
        elif scale is not None:
            tril = np.tril(np.asarray(scale, "float64"))
            index = np.arange(tril.shape[-1])
            # Its strict lower triangle, and the log of its diagonal.
            raw["scale_tril"] = np.tril(tril, -1)
            raw["scale_tril"][..., index, index] = np.log(
                tril[..., index, index])
        if transition is not None:
            raw["transition"] = np.log(
                np.maximum(np.asarray(transition, "float64"), 1e-300))
        if df is not None:
            raw["log_df"] = np.log(np.maximum(
                np.asarray(df, "float64") - self.MIN_DF, 1e-6))
        return raw

    def _parameters_from_weights(self, raw):
        """What the filter computes with, from raw weight values (tensors
        of one float dtype, or the weights themselves): see `parameters`."""
        params = {"level": raw["level"]}
        transition = raw["transition"]
        params["log_transition"] = transition - ops.logsumexp(
            transition, axis=-1, keepdims=True)
        k = self.num_states
        params["log_initial"] = ops.zeros_like(transition[0]) - math.log(k)
        if self.covariance == "diagonal":
            log_scale = ops.maximum(raw["log_scale"], self.LOG_SCALE_FLOOR)
            params["log_scale"] = log_scale
        else:
            tril = raw["scale_tril"]
            eye = ops.eye(self.input_dim, dtype=tril.dtype)
            log_diagonal = ops.maximum(
                ops.diagonal(tril, axis1=-2, axis2=-1), self.LOG_SCALE_FLOOR)
            params["scale_tril"] = ops.tril(tril, -1) + eye * (
                ops.expand_dims(ops.exp(log_diagonal), -1))
        if self.order >= 1 and self.covariance == "diagonal":
            persistence = raw["persistence"]
            params["ar"] = ops.tanh(persistence)
            if self.order == 1:
                # s / sqrt(1 - tanh(r)^2) = s cosh(r), with log cosh(r) =
                # |r| + softplus(-2|r|) - log 2 (cosh overflows beyond 89).
                magnitude = ops.abs(persistence)
                params["first_log_scale"] = log_scale + (
                    magnitude + ops.softplus(-2.0 * magnitude) - math.log(2.0)
                )
        elif self.order >= 1:
            params["ar"] = raw["ar"]
        if "log_df" in raw:
            params["df"] = self.MIN_DF + ops.exp(raw["log_df"])
        return params

    def parameters(self, dtype="float32"):
        """The HMM's parameters from the weights, as tensors: what the
        filter computes with (`log_likelihoods` takes them).

        Args:
            dtype: The float dtype to compute them in (the layer's filter:
                float32; offline inference: the backend's widest).

        Returns:
            A dict: `level` `(K, F)`; with `order >= 1`, `ar`, the AR
            coefficients (`(K or 1, order * F)` diagonal, `(K or 1,
            order * F, F)` full); `log_scale` `(K or 1, F)` (diagonal) or
            `scale_tril` `(K or 1, F, F)` (full, lower triangular);
            `log_transition` `(K, K)`, the log of P (rows); `log_initial`
            `(K,)`, the log of the first state's distribution (uniform);
            with `order=1` and diagonal covariance `first_log_scale`,
            the log of the stationary scale of the first step; and with
            `distribution="student_t"`, `df` `(K or 1, F)`.
        """
        self._check_built("parameters")
        return self._parameters_from_weights({
            name: ops.cast(getattr(self, name), dtype)
            for name in self._weight_names})

    def get_parameters(self):
        """The HMM's natural parameters (NumPy float64): the inverse of
        `set_parameters`, `switch.set_parameters(**switch.get_parameters())`
        leaving the weights as they are.

        Returns:
            A dict: `level` `(K, F)`; `ar` (`None` with `order=0`) `(K or 1,
            order * F)` diagonal AR coefficients or `(K or 1, order * F, F)`
            AR matrices; `scale` `(K or 1, F)` scales or `(K or 1, F, F)`
            lower-triangular Cholesky factors of the covariances;
            `transition` `(K, K)` (rows sum to 1); `initial` `(K,)`, the
            first state's distribution (uniform); with
            `distribution="student_t"`, `df` `(K or 1, F)`, the degrees of
            freedom.

        Example:

        >>> layer = keras_mrnn.MarkovLSTM(4, num_states=2, switch="hmm")
        >>> layer.build((None, None, 1))
        >>> np.round(layer.cell.switch.get_parameters()["transition"], 3)
        array([[0.9, 0.1],
               [0.1, 0.9]])
        """
        params = {name: ops.convert_to_numpy(value).astype("float64")
                  for name, value in self.parameters().items()}
        scale = (np.exp(params["log_scale"]) if self.covariance == "diagonal"
                 else params["scale_tril"])
        natural = dict(
            level=params["level"], ar=params.get("ar"), scale=scale,
            transition=np.exp(params["log_transition"]),
            # Uniform (`log_initial` is float32: this is exact).
            initial=np.full(self.num_states, 1.0 / self.num_states))
        if "df" in params:
            natural["df"] = params["df"]
        return natural

    def is_at_initial_parameters(self):
        """Whether the weights are still those of a new switch: neither
        `MarkovLSTM.adapt`, nor training, nor loading changed them."""
        if self.num_states is None:
            return True
        start = self._weights_from_parameters(**self.initial_parameters())
        return all(
            np.array_equal(ops.convert_to_numpy(getattr(self, name)),
                           start[name].astype(getattr(self, name).dtype))
            for name in self._weight_names)

    def _check_built(self, method):
        if self.num_states is None:
            raise ValueError(
                f"`{method}` needs a built switch: build the layer (or call "
                f"it on data) first. Received: {self!r}, not built.")

    def emission_mean(self, params, lags, observed):
        """The mean of each state's emission given the lags: `mu_k + sum_i
        A_{k,i} (x_{t-i} - mu_k)`, a missing lag taken at the level.

        Args:
            params: `parameters()` (or the same dict of arrays).
            lags: `(..., order * F)`, `[x_{t-1}, ..., x_{t-order}]`
                (ignored with `order=0`: give `None`).
            observed: `(..., order)`, 1 where lag i was observed.

        Returns:
            `(..., K, F)` (`(K, F)` with `order=0`).
        """
        level = params["level"]
        # Per-step shifts of the means (a forecasting head's, from the
        # past), `(..., K, F)`.
        offset = params.get("loc_offset", 0.0)
        if self.order == 0:
            return level + offset
        features = level.shape[-1]
        # The deviation of each observed lag from each state's level.
        mask = ops.repeat(observed, features, axis=-1)
        deviation = (ops.expand_dims(lags, -2)
                     - ops.tile(level, (1, self.order))
                     ) * ops.expand_dims(mask, -2)       # (..., K, pF)
        if self.covariance == "diagonal":
            terms = deviation * params["ar"]
            mean = level + offset
            for i in range(self.order):
                mean = mean + terms[..., i * features:(i + 1) * features]
            return mean
        return level + offset + ops.squeeze(
            ops.matmul(ops.expand_dims(deviation, -2), params["ar"]), -2)

    def log_likelihoods(self, params, x, lags, observed):
        """`log N(x_t | state k)` for every state (the emissions).

        Args:
            params: `parameters()` (or the same dict of arrays).
            x: `(..., F)`, the steps.
            lags: `(..., order * F)`, `[x_{t-1}, ..., x_{t-order}]`.
            observed: `(..., order)`, 1 where lag i was observed, 0 where
                it is missing (taken at the state's level).

        Returns:
            `(..., K)`.
        """
        x = ops.expand_dims(x, -2)                       # (..., 1, F)
        mean = self.emission_mean(params, lags, observed)
        features = x.shape[-1]
        residual = x - mean                              # (..., K, F)
        if self.covariance == "diagonal":
            log_scale = params["log_scale"]
            if "first_log_scale" in params:
                # Order 1: the first step (its lag missing) is stationary.
                first = 1.0 - ops.expand_dims(observed, -2)
                log_scale = log_scale + first * (
                    params["first_log_scale"] - params["log_scale"])
            # Per-step shifts of the log scales (a forecasting head's).
            log_scale = log_scale + params.get("log_scale_offset", 0.0)
            if "df" in params:
                return ops.sum(_distributions.student_t_log_prob(
                    residual, params["df"], 0.0, ops.exp(log_scale)), -1)
            z = residual * ops.exp(-log_scale)
            return -ops.sum(0.5 * z * z + log_scale, axis=-1) - (
                0.5 * features * math.log(2 * math.pi))
        tril = params["scale_tril"]
        inverse = ops.solve_triangular(
            tril, ops.broadcast_to(ops.eye(features, dtype=tril.dtype),
                                   tril.shape), lower=True)
        z = ops.squeeze(ops.matmul(
            ops.expand_dims(residual, -2), ops.swapaxes(inverse, -1, -2)), -2)
        log_det = ops.sum(ops.log(ops.diagonal(tril, axis1=-2, axis2=-1)), -1)
        return -0.5 * ops.sum(z * z, axis=-1) - log_det - (
            0.5 * features * math.log(2 * math.pi))

    def sequence_log_likelihoods(self, x, parameters=None):
        """The emissions of whole sequences, in NumPy (float64).

        What offline inference and EM compute with: `log p(x_t | s_t = k,
        x_<t)` at every step, each step's lags taken from the steps before
        it in `x` (the first `order` steps scored as the filter scores
        them). Computed on the backend's tensors in its widest float
        (float64; float32 on JAX unless `jax_enable_x64` is set).

        Args:
            x: `(N, T, F)`, sequences whose steps are all valid (move a
                masked sequence's valid steps to its front first).
            parameters: Natural parameters as `get_parameters` returns
                them (`initial` ignored), or `None` for the current
                weights.

        Returns:
            NumPy float64 `(N, T, K)`.
        """
        self._check_built("sequence_log_likelihoods")
        dtype = _backend.widest_float()

        def tensor(value):
            return ops.convert_to_tensor(np.asarray(value, dtype=dtype))

        if parameters is None:
            params = self.parameters(dtype)
        else:
            params = self._parameters_from_weights({
                name: tensor(value) for name, value in
                self._weights_from_parameters(**parameters).items()})
        lags, observed = _inference.lagged(np.asarray(x, "float64"), self.order)
        return ops.convert_to_numpy(self.log_likelihoods(
            params, tensor(x), tensor(lags), tensor(observed))
        ).astype("float64")

    def logits(self, projected, h, states):
        """One step of the forward filter (float32): the logits
        `log q_t` (normalized), `log p(x_t | x_<t)` and the new states."""
        x = ops.cast(projected, "float32")
        q_tm1 = ops.cast(states[0], "float32")
        # Zero states mark a sequence's first step (q_{t-1} sums to 1
        # after it). Under mixed precision q_{t-1} was stored in float16
        # and sums to 1 +- 1e-3: renormalized, so the rounding does not
        # build up.
        total = ops.sum(q_tm1, axis=-1, keepdims=True)
        started = ops.cast(total > 0.5, "float32")
        q_tm1 = q_tm1 / ops.maximum(total, 1e-6)
        params = self.parameters()
        # In log space: a row of P may underflow in float32, log P not.
        log_prior = ops.logsumexp(
            ops.expand_dims(ops.log(ops.maximum(q_tm1, 1e-30)), -1)
            + params["log_transition"], axis=1)
        log_prior = ops.where(started > 0, log_prior, params["log_initial"])
        lags, observed, count = None, None, None
        if self.order >= 1:
            lags = ops.cast(states[1], "float32")
            if self.order == 1:
                observed = started
            else:
                count = ops.cast(states[2], "float32")
                observed = ops.cast(
                    count > ops.arange(self.order, dtype="float32"), "float32")
        logits = log_prior + self.log_likelihoods(params, x, lags, observed)
        log_evidence = ops.logsumexp(logits, axis=-1, keepdims=True)
        # Returned normalized (log q_t) and floored: the packed output may
        # be float16, where an outlier's raw logits would overflow to -inf.
        log_q = ops.maximum(logits - log_evidence, -1e4)
        carry = [ops.exp(log_q)]
        if self.order >= 1:
            carry.append(ops.concatenate(
                [x, lags[:, :-x.shape[-1]]], axis=-1)
                if self.order > 1 else x)
        if self.order >= 2:
            carry.append(ops.minimum(count + 1.0, float(self.order)))
        if not self.task_gradient:
            # The switch (and what the layer returns of it) is a constant
            # to the task; the carried q_t and the log-evidence keep their
            # gradient, so the input likelihood still trains the filter.
            log_q = ops.stop_gradient(log_q)
        return log_q, log_evidence[:, 0], carry

    def next_states(self, carry, z):
        return carry

    def set_parameters(self, level, ar=None, scale=None, transition=None,
                       initial=None, df=None):
        """Sets the weights from natural parameters (NumPy).

        What `MarkovLSTM.adapt` calls with its fit; also the way to load
        known parameters. The inverse of `get_parameters` (`parameters()`
        returns the logs the filter computes with instead).

        Args:
            level: `(K, F)`.
            ar: With `order >= 1`: `(K or 1, order * F)` diagonal AR
                coefficients (clipped into [-AR_LIMIT, AR_LIMIT] = [-0.99,
                0.99]), or `(K or 1, order * F, F)` AR matrices (`"full"`).
            scale: `(K or 1, F)` scales (`"diagonal"`) or `(K or 1, F, F)`
                lower-triangular Cholesky factors (`"full"`).
            transition: `(K, K)` row-stochastic transition matrix.
            initial: `None`, or `(K,)` uniform: the filter always starts
                from the uniform distribution.
            df: With `distribution="student_t"`: `(K or 1, F)` degrees of
                freedom, each above `MIN_DF` = 2.

        Example:

        >>> switch = keras_mrnn.switches.HMMSwitch()
        >>> layer = keras_mrnn.MarkovLSTM(4, num_states=2, switch=switch)
        >>> layer.build((None, None, 1))
        >>> switch.set_parameters(
        ...     level=[[-1.0], [1.0]], ar=[[0.5], [0.5]],
        ...     scale=[[0.3], [0.3]], transition=[[0.9, 0.1], [0.2, 0.8]])
        >>> log_transition = switch.parameters()["log_transition"]
        >>> np.round(np.exp(keras.ops.convert_to_numpy(log_transition)), 3)
        array([[0.9, 0.1],
               [0.2, 0.8]], dtype=float32)
        """
        self._check_built("set_parameters")
        shapes = self._weight_shapes()
        for name, value, weight in (
            ("level", level, "level"),
            ("ar", ar, "persistence" if self.covariance == "diagonal"
             else "ar"),
            ("scale", scale, "log_scale" if self.covariance == "diagonal"
             else "scale_tril"),
            ("transition", transition, "transition"),
            ("df", df, "log_df"),
        ):
            if value is None:
                continue
            if weight not in shapes:
                raise ValueError(
                    f"Argument `{name}`: this switch has no such parameter "
                    f"({self!r}). Received: {name} of shape "
                    f"{np.shape(value)}.")
            if np.shape(value) != shapes[weight]:
                raise ValueError(
                    f"Argument `{name}` must have shape {shapes[weight]} for "
                    f"{self!r}. Received shape {np.shape(value)}.")
        k = self.num_states
        if initial is not None and not np.allclose(initial, 1.0 / k,
                                                   atol=1e-6):
            raise ValueError(
                "Argument `initial`: the hmm switch's filter starts every "
                f"sequence from the uniform distribution, [1/{k}] * {k}. "
                f"Received: initial={np.asarray(initial).tolist()}.")
        if df is not None and np.any(np.asarray(df) <= self.MIN_DF):
            raise ValueError(
                f"Argument `df` must be above {self.MIN_DF}. Received: "
                f"df={np.asarray(df).tolist()}.")
        raw = self._weights_from_parameters(level, ar, scale, transition,
                                            df=df)
        for name, value in raw.items():
            getattr(self, name).assign(value.astype("float32"))


_SWITCHES = {
    cls.name: cls for cls in (LinearSwitch, PredictiveSwitch, HMMSwitch)
}


def get(identifier, markov_transition=False):
    """A switch from its identifier, as `keras.initializers.get` does.

    Args:
        identifier: A `Switch`, a string (`"linear"`, `"predictive"`,
            `"hmm"`: the switch with its default arguments), or a switch's
            serialized config (a dict, as `.keras` files hold it).
        markov_transition: Boolean, the cell's `markov_transition`: given
            to a switch made from a string; a switch object must agree.

    Returns:
        A `Switch`.

    Example:

    >>> keras_mrnn.switches.get("hmm")
    HMMSwitch(order=1, switching_ar=True, switching_scale=True, covariance='diagonal', task_gradient=True, distribution='normal')
    """
    markov_transition = check.boolean("markov_transition", markov_transition)
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        cls = _SWITCHES[check.choice("switch", identifier, tuple(_SWITCHES))]
        if cls is HMMSwitch:
            if markov_transition:
                raise ValueError(
                    "Arguments `switch='hmm'` and `markov_transition=True` "
                    "cannot be combined: the hmm switch has its own "
                    "transition matrix (`switch_transition`). Received: "
                    "switch='hmm', markov_transition=True.")
            return cls()
        return cls(markov_transition=markov_transition)
    if not isinstance(identifier, Switch):
        raise TypeError(
            "Argument `switch` must be 'linear', 'predictive', 'hmm' or a "
            "keras_mrnn.switches.Switch (LinearSwitch, PredictiveSwitch, "
            f"HMMSwitch). Received: switch={identifier!r} of type "
            f"{type(identifier).__name__}.")
    if markov_transition and not getattr(identifier, "markov_transition",
                                         False):
        raise ValueError(
            "Argument `markov_transition=True` with a switch object: give "
            "it to the switch instead (LinearSwitch(markov_transition=True) "
            "or PredictiveSwitch(markov_transition=True); the hmm switch has "
            f"its own transition matrix). Received: switch={identifier!r}, "
            "markov_transition=True.")
    return identifier


# The arguments of `HMMSwitch`, refused by the cell and the layer with a
# pointer to the switch.
HMM_ARGUMENTS = tuple(HMMSwitch().get_config())


def check_no_switch_arguments(owner, kwargs, switch):
    """Raises if `kwargs` holds an argument of `HMMSwitch`."""
    for name in HMM_ARGUMENTS:
        if name in kwargs:
            raise ValueError(
                f"Argument `{name}` is an argument of the hmm switch, not of "
                f"{owner}: pass `switch=keras_mrnn.switches.HMMSwitch("
                f"{name}={kwargs[name]!r})`. Received: {name}="
                f"{kwargs[name]!r} with switch={switch!r}.")
