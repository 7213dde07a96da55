"""The Markov LSTM: K parallel LSTMs and a Gumbel-softmax switch between them.

Kuo & Chien, "Markov Recurrent Neural Networks", IEEE MLSP 2018.
"""

import keras
from keras import ops

from keras_mrnn import _backend
from keras_mrnn import _internals
from keras_mrnn import _validation as check
from keras_mrnn import gumbel
from keras_mrnn import switches
from keras_mrnn._packed import SCALAR
from keras_mrnn._packed import PackedLayout
from keras_mrnn._regimes import RegimeAnalysis
from keras_mrnn._rnn import SteppedCell
from keras_mrnn._rnn import SteppedRNN
from keras_mrnn._scheduled import ScheduledScalar

INFERENCE_SWITCHES = ("argmax", "sample", "expected")


# `DropoutRNNCell` gives `keras.layers.LSTMCell` its per-sequence dropout
# masks; `keras.layers.RNN` recognizes cells by this class.
@keras.saving.register_keras_serializable(package="keras_mrnn")
class MarkovLSTMCell(
    SteppedCell, keras.layers.Layer, _internals.DropoutRNNCell
):
    """Cell of the Markov LSTM: K LSTMs and a latent switch between them.

    At every step K LSTMs read the same input `x_t` and the same previous
    state `(h_{t-1}, c_{t-1})`. Switch logits computed from `(x_t, h_{t-1})`
    (with `switch="hmm"`, from the inputs alone) give `q_t =
    softmax(logits_t)`; a switch `z_t` (a one-hot Gumbel-softmax
    sample with the gradient of the relaxed one while training, by default,
    and `one_hot(argmax q_t)` at inference) mixes the K candidate states:
    `h_t = sum_k z_t[k] h^k_t`, `c_t = sum_k z_t[k] c^k_t`. With
    `num_states=1` the cell is an ordinary LSTM.

    The K LSTMs share one fused kernel, so each step costs one matmul of
    the recurrent state for all of them (under XLA, `MarkovLSTM` does the
    input matmul for all steps at once, before its loop). The columns of
    `kernel`, `recurrent_kernel` and `bias` are laid out as
    `[i | f | g | o]`, each gate block holding the K LSTMs one after the
    other (`k * units + j`); `lstm_weights(k)` returns the weights of LSTM
    `k` in the layout of `keras.layers.LSTMCell`. The switch
    (`keras_mrnn.switches`) has its own weights, made on the cell and named
    `switch_*` (and `transition_kernel`): see each switch.

    Args:
        units: Positive integer, dimensionality of the output space.
        num_states: Positive integer K, the number of parallel LSTMs.
        temperature: Positive float, the initial Gumbel-softmax temperature.
            It lives in a non-trainable variable (saved with the model) that
            `callbacks.GumbelTemperatureScheduler` or the `temperature`
            property can change while a compiled model trains.
        straight_through: If `True` (default), the training switch is the
            one-hot of the Gumbel-softmax sample in the forward pass with the
            gradient of the soft sample (straight-through estimator), so
            training runs the same one-LSTM-at-a-time model as the default
            argmax inference. `False` trains with the relaxed (soft) sample,
            as the reference does: the K LSTMs are then blended while
            training, and the argmax switch at test time runs a different
            model (see the README, "Choosing the switch").
        inference_switch: Switch used when `training` is false: `"argmax"`
            (default, one-hot of the most probable LSTM), `"sample"` (a hard
            sample from `q_t`) or `"expected"` (the soft mix `q_t` itself).
        markov_transition: If `True`, the switch logits get a learned K x K
            transition term `z_{t-1} @ transition_kernel`, with `z_{t-1}`
            carried as a third state, so that `q(z_t | z_{t-1}, x_t, h_{t-1})`
            is an explicit Markov chain (`LinearSwitch(markov_transition=
            True)`, or the predictive one's). Use it when the regimes of the
            data persist (or alternate) in a way that `h_{t-1}` alone
            describes poorly. `z_0` is zero, so the first step has no
            transition term. Not with the hmm switch, which has its own
            transition matrix.
        switch: How the switch logits are computed: a string, a
            `keras_mrnn.switches.Switch` or a switch's serialized config, as
            initializers are given. A switch object belongs to one cell.

            - `"linear"` (default, the reference; `LinearSwitch()`):
              `x_t @ switch_kernel + h_{t-1} @ switch_recurrent_kernel +
              switch_bias`.
            - `"predictive"` (`PredictiveSwitch()`): each state predicts
              the step's input from `h_{t-1}`, and the logits are Bayes'
              rule over those predictions.
            - `"hmm"` (`HMMSwitch()`): `q_z(t)` is the forward filter of a
              hidden Markov model of the inputs (Gaussian AR(1) regimes,
              each around its own level, and a learned transition matrix);
              it does not read `h_{t-1}`. `HMMSwitch(order=...,
              switching_ar=..., switching_scale=..., covariance=...,
              task_gradient=...)` configures it, and `MarkovLSTM.adapt`
              fits it to data by EM. Train it with `MarkovLSTM`, whose
              `input_likelihood_weight` (default 1.0 for this switch and the
              predictive one) adds the model's negative log-likelihood of
              the inputs; in a plain `keras.layers.RNN` only the task's
              gradient, through the switch, reaches it, and
              `return_state=True` on a symbolic input lists fewer states
              (those as wide as the input are known once the cell is built,
              after the RNN copied `state_size`). Standardize the inputs
              (its levels start at the K quantiles of N(0, 1)), and mask
              padding.
        activation: Activation of the cell input and output (`tanh`).
        recurrent_activation: Activation of the gates (`sigmoid`).
        use_bias: Boolean, whether the layer uses a bias vector.
        kernel_initializer: Initializer of `kernel` (inputs).
        recurrent_initializer: Initializer of `recurrent_kernel`.
        bias_initializer: Initializer of `bias`.
        unit_forget_bias: If `True`, add 1 to the forget-gate bias of every
            LSTM at initialization.
        kernel_regularizer: Regularizer of `kernel`.
        recurrent_regularizer: Regularizer of `recurrent_kernel`.
        bias_regularizer: Regularizer of `bias`.
        kernel_constraint: Constraint of `kernel`.
        recurrent_constraint: Constraint of `recurrent_kernel`.
        bias_constraint: Constraint of `bias`.
        dropout: Float in [0, 1), fraction of the input units to drop (one
            mask per sequence).
        recurrent_dropout: Float in [0, 1), fraction of the recurrent units
            to drop (one mask per sequence).
        seed: Integer seed of the Gumbel noise and the dropout masks.
        output_switches: If `True`, the output of each step is the packed
            vector `[h_t, logits_t, z_t]` of size `units + 2 * num_states`
            instead of `h_t`, followed with `switch="predictive"` or
            `"hmm"` by `log p(x_t | past)`, one more column (`MarkovLSTM`
            sets this and splits it).

    Call arguments:
        inputs: A 2-D tensor `(batch, features)`.
        states: List of the previous states: `h` and `c`, both
            `(batch, units)`, then the switch's: `z_{t-1}` `(batch,
            num_states)` with `markov_transition=True`; with `switch="hmm"`,
            `q_{t-1}` `(batch, num_states)` and `x_{t-1}` `(batch, features)`
            (see `HMMSwitch` for its other orders).
        training: Python boolean: Gumbel-softmax switch and dropout when
            true, the `inference_switch` otherwise.

    Example:

    >>> inputs = np.random.random((32, 10, 8)).astype("float32")
    >>> rnn = keras.layers.RNN(keras_mrnn.MarkovLSTMCell(4, num_states=3))
    >>> tuple(rnn(inputs).shape)
    (32, 4)
    """

    def __init__(
        self,
        units,
        num_states=4,
        temperature=1.0,
        straight_through=True,
        inference_switch="argmax",
        markov_transition=False,
        switch="linear",
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        output_switches=False,
        **kwargs,
    ):
        switches.check_no_switch_arguments("MarkovLSTMCell", kwargs, switch)
        super().__init__(**kwargs)
        self.units = check.positive_int("units", units)
        self.num_states = check.positive_int("num_states", num_states)
        self.temperature = temperature
        self.straight_through = check.boolean(
            "straight_through", straight_through
        )
        self.inference_switch = check.choice(
            "inference_switch", inference_switch, INFERENCE_SWITCHES
        )
        self.switch = switches.get(switch, markov_transition)
        self.switch._attach(self)
        self.use_bias = check.boolean("use_bias", use_bias)
        self.unit_forget_bias = check.boolean(
            "unit_forget_bias", unit_forget_bias
        )
        # The activations, initializers, regularizers and constraints among
        # the arguments, from their identifiers (as keras.layers.LSTMCell).
        self._set_objects(locals())
        self.dropout = check.rate("dropout", dropout)
        self.recurrent_dropout = check.rate(
            "recurrent_dropout", recurrent_dropout
        )
        self._set_seed(seed)
        self.output_switches = check.boolean(
            "output_switches", output_switches
        )
        # Files saved before the switches were components order some
        # switch weights after `bias` (set by `from_config`, see there).
        self._legacy_weight_order = False

        # The switch's states (some as wide as the input) join in `build`.
        self.state_size = [self.units, self.units] + self.switch.state_size(
            self.num_states)
        self.output_size = self._output_layout().size
        self._gate_width = 4 * self.num_states * self.units

    @property
    def markov_transition(self):
        """Whether the switch logits have the `z_{t-1}` transition term."""
        return getattr(self.switch, "markov_transition", False)

    def _output_layout(self):
        """The fields of a step's output (see `output_switches`)."""
        fields = [("h", self.units)]
        if self.output_switches:
            fields += [("logits", self.num_states), ("z", self.num_states)]
            if self.switch.has_input_likelihood:
                fields.append(("log_evidence", SCALAR))
        return PackedLayout(fields)

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        self._check_step_shape(input_shape)
        input_dim = input_shape[-1]
        width = self._gate_width
        self.kernel = self._add_weight("kernel", (input_dim, width), "kernel")
        self.recurrent_kernel = self._add_weight(
            "recurrent_kernel", (self.units, width), "recurrent"
        )
        # The switch has weights of its own: appended to the gate kernels
        # they would make the per-step matmul an awkward width (4Km + K)
        # that runs markedly slower than 4Km on CPU.
        self.switch.build(self.num_states, input_dim)
        if self.use_bias:
            block = self.num_states * self.units

            def bias_initializer(shape, dtype=None):
                if not self.unit_forget_bias:
                    return self.bias_initializer(shape, dtype=dtype)
                # As keras.layers.LSTMCell: the forget block starts at one.
                return ops.concatenate([
                    self.bias_initializer((block,), dtype=dtype),
                    ops.ones((block,), dtype=dtype),
                    self.bias_initializer((2 * block,), dtype=dtype),
                ])

            self.bias = self._add_weight(
                "bias", (width,), "bias", bias_initializer
            )
        else:
            self.bias = None
        type(self).temperature.add_variable(self)
        self.state_size = [self.units, self.units] + self.switch.state_size(
            self.num_states, input_dim
        )
        self.built = True

    def add_switch_weight(self, name, shape, kind=None, initializer=None):
        """The hook through which the switch makes its weights on the cell.

        The weight is named `switch_{name}` (`transition_kernel` keeps its
        name), and belongs to the cell (saved with it, trained with it).

        Args:
            name: The weight's name in the switch (its attribute there).
            shape: Its shape.
            kind: `"kernel"`, `"recurrent"` or `"bias"`: take the cell's
                initializer, regularizer and constraint of that kind; or
                `None`, `initializer` alone.
            initializer: An initializer (overrides the kind's).

        Returns:
            The new variable.
        """
        full_name = name if name == "transition_kernel" else f"switch_{name}"
        if kind is None:
            return self.add_weight(
                shape=shape, name=full_name, initializer=initializer)
        return self._add_weight(full_name, shape, kind, initializer)

    def get_config(self):
        config = super().get_config()
        config["switch"] = keras.saving.serialize_keras_object(self.switch)
        return config

    @classmethod
    def from_config(cls, config):
        cell = cls(**config)
        cell._legacy_weight_order = isinstance(config.get("switch"), str)
        return cell

    def load_own_variables(self, store):
        """Loads the weights, also from files saved before switches were
        components (switch given as a string in the config), whose linear
        and predictive switches saved `switch_bias` and
        `switch_transition_kernel` after the LSTMs' `bias`."""
        late = [
            getattr(self.switch, name)
            for name in self.switch.late_legacy_weights
            if name in self.switch.weight_names
        ]
        if not (self._legacy_weight_order and late and self.use_bias):
            return super().load_own_variables(store)
        trainable = [
            v for v in self._trainable_variables
            if not any(v is w for w in late)
        ]
        order = trainable + late + self._non_trainable_variables
        if len(store.keys()) != len(order):
            return super().load_own_variables(store)
        for i, variable in enumerate(order):
            variable.assign(store[f"{i}"])

    # A variable, so that a compiled model reads its current value.
    temperature = ScheduledScalar(
        check.positive_float,
        "The current Gumbel-softmax temperature, as a Python float.",
    )

    def lstm_weights(self, k):
        """Returns the weights of LSTM `k` in `keras.layers.LSTMCell` layout.

        Args:
            k: Index of the LSTM, in `[0, num_states)`.

        Returns:
            A list `[kernel, recurrent_kernel, bias]` of NumPy arrays of
            shapes `(features, 4 * units)`, `(units, 4 * units)` and
            `(4 * units,)` (no bias when `use_bias=False`).

        Example:

        >>> cell = keras_mrnn.MarkovLSTMCell(4, num_states=2)
        >>> cell.build((None, 3))
        >>> [w.shape for w in cell.lstm_weights(1)]
        [(3, 16), (4, 16), (16,)]
        """
        if not self.built:
            raise ValueError(
                f"MarkovLSTMCell '{self.name}' has no weights yet: build it "
                "(or call the layer on data) before `lstm_weights`."
            )
        k = int(k)
        if not 0 <= k < self.num_states:
            raise ValueError(
                f"Argument `k` must be in [0, {self.num_states}). "
                f"Received: k={k}."
            )
        columns = [
            gate * self.num_states * self.units + k * self.units + j
            for gate in range(4)
            for j in range(self.units)
        ]
        weights = [self.kernel, self.recurrent_kernel]
        if self.use_bias:
            weights.append(self.bias)
        return [ops.convert_to_numpy(w)[..., columns] for w in weights]

    # ------------------------------------------------------------------ maths
    def _uses_noise(self, training):
        if self.num_states == 1:
            return False
        return bool(training) or self.inference_switch == "sample"

    # When `MarkovLSTM` projects all steps before its loop (under XLA), it
    # hands `project_inputs` time-major sequences, so the wide projected
    # tensor never needs a transpose.
    time_major_projection = True

    def call(self, inputs, states, training=False):
        # Only a foreign loop (keras.layers.RNN) calls the cell step by
        # step; the package's layers project all steps first.
        if self._uses_noise(training) and _backend.seeds_frozen_here(
            self.seed_generator, inputs
        ):
            raise ValueError(
                f"MarkovLSTMCell '{self.name}' draws its Gumbel noise "
                "inside a JAX loop (keras.layers.RNN runs the cell in "
                "jax.lax.scan), where the seed generator cannot advance: "
                "every step and call would repeat the same noise. Use "
                "keras_mrnn.MarkovLSTM, which draws the noise of all "
                "steps before its loop, or inference_switch='argmax' or "
                "'expected' outside training."
            )
        return super().call(inputs, states, training=training)

    def project_inputs(self, inputs, training=False):
        """Everything of a step that does not depend on the state.

        Computes the input part of the gates and switch logits and, when the
        switch is sampled, draws the Gumbel noise. Kept apart from `step`:
        per step, TensorFlow runs it beside the recurrent chain; for all steps
        at once (what `MarkovLSTM` does under XLA), it leaves the loop.

        Args:
            inputs: `(batch, features)`, or a time-major sequence
                `(time, batch, features)`.
            training: Python boolean; applies the input dropout mask and
                draws the switch noise.

        Returns:
            A tuple `(inputs @ kernel + bias, inputs @ switch_kernel +
            switch_bias)` (the predictive and hmm switches: the inputs
            themselves in second place), plus the Gumbel noise
            `(..., num_states)` when the switch is sampled.
        """
        sequence = len(inputs.shape) == 3
        raw_inputs = inputs
        if training and self.dropout > 0:
            mask = self.get_dropout_mask(inputs[0] if sequence else inputs)
            inputs = inputs * (ops.expand_dims(mask, 0) if sequence else mask)
        # One 2-D matmul per weight: a 3-D one becomes a tensordot with
        # transposes. The bias rides in the matmul as a row of the kernel
        # against a column of ones, because the gradient of a broadcast bias
        # add is a column reduction that TF runs far slower than a matmul.
        flat = ops.reshape(inputs, (-1, inputs.shape[-1]))
        kernel = self.kernel
        if self.use_bias:
            flat = ops.concatenate(
                [flat, ops.ones_like(flat[:, :1])], axis=-1
            )
            kernel = ops.concatenate(
                [kernel, ops.expand_dims(self.bias, 0)], axis=0
            )
        gates = ops.matmul(flat, kernel)
        leading = tuple(ops.shape(inputs)[:-1])
        parts = [
            ops.reshape(gates, leading + (self._gate_width,)),
            # Undropped: the predictive and hmm switches score the input.
            self.switch.project_inputs(flat, raw_inputs),
        ]
        if self._uses_noise(training):
            noise = gumbel.sample_gumbel(
                leading + (self.num_states,), seed=self.seed_generator,
                dtype="float32",
            )
            parts.append(ops.cast(noise, gates.dtype))
        return tuple(parts)

    def _switch(self, logits, noise, training):
        """The switch `z_t` (float32 `(batch, K)`, rows on the simplex)."""
        logits = ops.cast(logits, "float32")
        if self.num_states == 1:
            # One LSTM: the switch is always 1 (and softmax would warn).
            return ops.ones_like(logits)
        if training:
            return gumbel.gumbel_softmax(
                logits, self._temperature, hard=self.straight_through,
                noise=noise,
            )
        if self.inference_switch == "expected":
            return gumbel.softmax(logits)
        if self.inference_switch == "sample":
            logits = logits + ops.cast(noise, "float32")
        return ops.one_hot(
            ops.argmax(logits, axis=-1), self.num_states, dtype="float32"
        )

    def step(self, projected, states, training=False):
        """One recurrent step given `project_inputs` of this step.

        Args:
            projected: `project_inputs(x_t, training)`.
            states: The previous states, as in `call`.
            training: Python boolean, as given to `project_inputs`.

        Returns:
            `(output, new_states)` as in `call`.
        """
        h_tm1, c_tm1 = states[0], states[1]
        num_states, units = self.num_states, self.units
        gates_in, switch_in = projected[0], projected[1]
        noise = projected[2] if len(projected) > 2 else None
        h_in = h_tm1
        if training and self.recurrent_dropout > 0:
            h_in = h_tm1 * self.get_recurrent_dropout_mask(h_tm1)
        z = gates_in + ops.matmul(h_in, self.recurrent_kernel)
        i, f, g, o = ops.split(z, 4, axis=-1)
        logits, log_evidence, carry = self.switch.logits(
            switch_in, h_in, states[2:]
        )
        if log_evidence is not None:
            # Packed in the compute dtype: float16 overflows below -65504.
            log_evidence = ops.maximum(log_evidence, -6e4)
        switch = ops.cast(self._switch(logits, noise, training), z.dtype)

        # Gates are (batch, K * units); viewed as (batch, K, units) where
        # they meet the shared c_{t-1} and the switch weights.
        shape = (-1, num_states, units)
        c_all = ops.reshape(
            self.recurrent_activation(f), shape
        ) * ops.expand_dims(c_tm1, 1) + ops.reshape(
            self.recurrent_activation(i) * self.activation(g), shape
        )
        h_all = ops.reshape(self.recurrent_activation(o), shape) * (
            self.activation(c_all)
        )
        if num_states == 1:
            h, c = h_all[:, 0], c_all[:, 0]
        else:
            weights = ops.expand_dims(switch, -1)
            h = ops.sum(weights * h_all, axis=1)
            c = ops.sum(weights * c_all, axis=1)

        new_states = [h, c] + [
            ops.cast(state, h.dtype)
            for state in self.switch.next_states(carry, switch)
        ]
        output = self._output_layout().pack(
            {"h": h, "logits": logits, "z": switch,
             "log_evidence": log_evidence},
            dtype=h.dtype,
        )
        return output, new_states


@keras.saving.register_keras_serializable(package="keras_mrnn")
class MarkovLSTM(RegimeAnalysis, SteppedRNN, keras.layers.RNN):
    """Markov LSTM layer (Kuo & Chien, 2018), fast and with its switches.

    A `keras.layers.RNN` over a `MarkovLSTMCell` that can return the switch
    probabilities `q_z(t)` and switches `z(t)`, adds the entropy regularizer
    of the reference and the hmm or predictive switch's input likelihood to
    the model's losses, and guards the batch size of stateful models.

    Args:
        units: Positive integer, dimensionality of the output space.
        num_states: Positive integer K, the number of parallel LSTMs.
        temperature: Initial Gumbel-softmax temperature (see
            `MarkovLSTMCell`).
        return_switches: If `True`, also return `q` and `z`, two
            `(batch, time, num_states)` tensors, after the main output
            (whatever `return_sequences` is). `keras.layers.Bidirectional`
            takes single-output layers only: for switches in both directions
            use two layers, one with `go_backwards=True`.
        entropy_weight: Non-negative float beta: adds
            `-beta * mean entropy of q_z(t)` (over batch and valid steps) to
            the model's losses. The reference's ER objective uses 0.001, its
            VB objective 1.0; 0 (default) is plain maximum likelihood. It
            keeps the switch soft: leave it at 0 when you want crisp
            regimes.
        input_likelihood_weight: Non-negative float, or `None` (default):
            1.0 with `switch="hmm"` or `"predictive"`, 0 otherwise. With
            those switches, adds this weight times the mean (over batch and
            valid steps) negative log-likelihood of each step's input under
            the states' predictions, `-log sum_k prior_k N(x_t; mu_k,
            sigma_k)` in nats per step, to the model's losses. It is what
            makes the states' predictions, and so the switch, follow the
            regimes of the input; 0 leaves them to the task's gradient.
        return_sequences: Whether to return the full sequence of `h`
            or only the last `h`.
        return_state: Whether to return the last states after the outputs.
        go_backwards: If `True`, process the sequence backwards (outputs
            come in processing order, as in Keras).
        stateful: If `True`, the last states of batch i are the initial
            states of batch i+1; needs a static batch size.
        unroll: If `True`, unroll the loop (short sequences only).
        zero_output_for_mask: Whether masked steps output zeros.
        loop_jit_compile: `"auto"` (default), `True` or `False`: compile
            the layer's own recurrent loop with XLA. `"auto"` does it on a
            GPU, inside a `tf.function` (`fit`, `evaluate`, `predict`, also
            under a `tf.distribute` strategy), when the model step is not
            already XLA-compiled; see the README, "Running on a GPU".
        **kwargs: The other arguments of `MarkovLSTMCell` (`straight_through`,
            `inference_switch`, `markov_transition`, `switch`, activations,
            initializers, regularizers, constraints, `dropout`,
            `recurrent_dropout`, `seed`) and of `keras.layers.Layer`.

    Call arguments:
        inputs: A 3-D tensor `(batch, time, features)`.
        mask: Optional boolean tensor `(batch, time)`.
        training: Python boolean (Gumbel-softmax and dropout when true).
        initial_state: Optional list of initial state tensors.

    Returns:
        `h` (`(batch, units)`, or `(batch, time, units)` with
        `return_sequences`), then `q` and `z` with `return_switches`, then the
        states with `return_state`: `h`, `c`, then `z_{t-1}` with
        `markov_transition=True`, or `q_{t-1}` and `x_{t-1}` with
        `switch="hmm"`.

    Example:

    >>> x = np.random.random((8, 28, 28)).astype("float32")
    >>> layer = keras_mrnn.MarkovLSTM(16, num_states=4, return_switches=True)
    >>> # To follow the regimes of the input: switch="hmm".
    >>> h, q, z = layer(x)
    >>> tuple(h.shape), tuple(q.shape), tuple(z.shape)
    ((8, 16), (8, 28, 4), (8, 28, 4))
    """

    _cell_class = MarkovLSTMCell
    _cell_name = "markov_lstm_cell"
    _derived_cell_arguments = ("output_switches",)

    def __init__(
        self,
        units,
        num_states=4,
        temperature=1.0,
        return_switches=False,
        entropy_weight=0.0,
        input_likelihood_weight=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        **kwargs,
    ):
        self.return_switches = check.boolean(
            "return_switches", return_switches
        )
        self.entropy_weight = check.non_negative_float(
            "entropy_weight", entropy_weight
        )
        switches.check_no_switch_arguments(
            "MarkovLSTM", kwargs, kwargs.get("switch", "linear"))
        # Made here (and handed on to the cell) to learn whether it has an
        # input likelihood.
        given = kwargs.get("switch", "linear")
        switch = kwargs["switch"] = switches.get(
            given,
            kwargs.get("markov_transition", False),
        )
        if input_likelihood_weight is None:
            input_likelihood_weight = (
                1.0 if switch.has_input_likelihood else 0.0
            )
        self.input_likelihood_weight = check.non_negative_float(
            "input_likelihood_weight", input_likelihood_weight
        )
        if (
            self.input_likelihood_weight > 0
            and not switch.has_input_likelihood
        ):
            raise ValueError(
                "Argument `input_likelihood_weight` needs switch='predictive'"
                " or switch='hmm' (the linear switch has no input "
                f"likelihood). Received: input_likelihood_weight="
                f"{input_likelihood_weight!r} with switch={given!r}."
            )
        cell = self._make_cell(
            kwargs,
            units=units,
            num_states=num_states,
            temperature=temperature,
            output_switches=(
                self.return_switches or self.entropy_weight > 0
                or self.input_likelihood_weight > 0
            ),
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )
        # Entropy and switch trajectories need every step's output.
        self._needs_all_outputs = self.cell.output_switches

    # Convenience accessors, as on keras.layers.LSTM.
    units = property(lambda self: self.cell.units)
    num_states = property(lambda self: self.cell.num_states)

    @property
    def temperature(self):
        """The current Gumbel-softmax temperature of the cell."""
        return self.cell.temperature

    @temperature.setter
    def temperature(self, value):
        self.cell.temperature = value

    def _unpack(self, last_output, outputs, mask, training):
        if not self.cell.output_switches:
            return [outputs if self.return_sequences else last_output]
        layout = self.cell._output_layout()
        parts = layout.unpack(outputs)
        h = parts["h"] if self.return_sequences else (
            layout.unpack(last_output)["h"]
        )
        log_q = ops.log_softmax(ops.cast(parts["logits"], "float32"), axis=-1)
        weights = self._step_weights(mask, log_q[..., 0])
        if self.entropy_weight > 0:
            entropy = -ops.sum(ops.exp(log_q) * log_q, axis=-1)
            self.add_loss(
                -self.entropy_weight * self._weighted_mean(entropy, weights)
            )
        if self.input_likelihood_weight > 0:
            log_evidence = ops.cast(parts["log_evidence"], "float32")
            self.add_loss(
                -self.input_likelihood_weight
                * self._weighted_mean(log_evidence, weights)
            )
        if not self.return_switches:
            return [h]
        return [h, ops.exp(log_q), ops.cast(parts["z"], "float32")]

    def _extra_output_widths(self):
        # q and z.
        return [self.cell.num_states] * 2 if self.return_switches else []

    def compute_output_spec(self, sequences, initial_state=None, mask=None,
                            training=False):
        shapes = self.compute_output_shape(sequences.shape)
        if not isinstance(shapes, tuple) or not isinstance(
            shapes[0], tuple
        ):
            shapes = (shapes,)
        # q and z are float32 whatever the compute dtype (mixed precision):
        # the switch is computed in float32.
        dtypes = [self.compute_dtype] * len(shapes)
        if self.return_switches:
            dtypes[1:3] = ["float32", "float32"]
        specs = [keras.KerasTensor(shape, dtype=dtype)
                 for shape, dtype in zip(shapes, dtypes)]
        return specs[0] if len(specs) == 1 else specs

    @classmethod
    def from_config(cls, config):
        layer = super().from_config(config)
        # Saved before the switches were components (see the cell's).
        layer.cell._legacy_weight_order = isinstance(
            config.get("switch"), str
        )
        return layer

    def get_config(self):
        return {
            **super().get_config(),
            "return_switches": self.return_switches,
            "entropy_weight": self.entropy_weight,
            "input_likelihood_weight": self.input_likelihood_weight,
        }
