"""The variational RNN: a recurrent latent variable model of sequences.

Chung et al., "A Recurrent Latent Variable Model for Sequential Data",
NeurIPS 2015 (arXiv:1506.02216).
"""

import keras
from keras import ops

from keras_mrnn import _backend
from keras_mrnn import _internals
from keras_mrnn import _validation as check
from keras_mrnn._packed import SCALAR
from keras_mrnn._packed import PackedLayout
from keras_mrnn._rnn import SteppedCell
from keras_mrnn._rnn import SteppedRNN
from keras_mrnn._scheduled import ScheduledScalar
from keras_mrnn._vrnn_analysis import DECODE_MODES
from keras_mrnn._vrnn_analysis import LATENT_MODES
from keras_mrnn._vrnn_analysis import VRNNAnalysis

LIKELIHOODS = ("gaussian", "bernoulli")
RECURRENCES = ("lstm", "gru")


@keras.saving.register_keras_serializable(package="keras_mrnn")
class VRNNCell(SteppedCell, keras.layers.Layer):
    """Cell of the variational RNN (VRNN) of Chung et al. (2015).

    With deterministic state `h_{t-1}` and input `x_t`, one step computes

    - the prior `p(z_t | h_{t-1}) = N(mu_0, diag sigma_0^2)` from an MLP of
      `h_{t-1}`;
    - the approximate posterior (encoder)
      `q(z_t | x_t, h_{t-1}) = N(mu_z, diag sigma_z^2)` from an MLP of
      `[phi_x(x_t), h_{t-1}]`;
    - a latent `z_t`: a reparameterized sample of `q` while training,
      `inference_latent` (a sample or the mean `mu_z`) otherwise;
    - the decoder `p(x_t | z_t, h_{t-1})` from an MLP of
      `[phi_z(z_t), h_{t-1}]`: a diagonal Gaussian with learned scale, or a
      Bernoulli with logits;
    - the recurrence `h_t = RNN(h_{t-1}, [phi_x(x_t), phi_z(z_t)])`, an LSTM
      (default) or a GRU;
    - the per-step `KL(q || p)` (closed form) and negative log-likelihood
      `-log p(x_t | z_t, h_{t-1})`, in nats; their sum is the step's negative
      ELBO.

    `phi_x` and `phi_z` are one dense layer of `feature_units` each; the
    prior, encoder and decoder have one hidden layer of `hidden_units`
    followed by a linear head. Scales are `softplus(.) + min_scale`. All
    distributions are computed in float32, also under a `mixed_float16`
    policy, with `tfp.distributions` on TensorFlow and the same formulas in
    `keras.ops` on JAX and PyTorch.

    The standard-normal noise `eps_t` of the posterior sample
    `z_t = mu_z + sigma_z * eps_t` is drawn by `project_inputs`, which
    `VRNN` runs on the whole sequence before its loop. In a plain
    `keras.layers.RNN` the cell draws it step by step, which JAX cannot do
    inside its loop (`jax.lax.scan`, where a seed generator does not
    advance): there a sampling cell raises a `ValueError`; use `VRNN`, or
    `inference_latent="mean"` outside training.

    The weights are fused so that each step costs one matmul of `h_{t-1}`:
    `recurrent_kernel` has the columns
    `[prior hidden | encoder hidden | decoder hidden | recurrence]`,
    `input_kernel` (applied to `phi_x(x_t)`) the columns
    `[encoder hidden | recurrence]`, and `latent_kernel` (applied to
    `phi_z(z_t)`) the columns `[decoder hidden | recurrence]`.
    The recurrence blocks follow `keras.layers.LSTMCell` (`[i | f | g | o]`)
    and `keras.layers.GRUCell` with `reset_after=True` (`[z | r | h]`).

    Used in a plain `keras.layers.RNN`, the cell outputs `h_t` and adds no
    loss; `VRNN` trains it on the negative ELBO.

    Args:
        units: Positive integer, dimensionality of the deterministic state
            `h` (and of the output).
        latent_dim: Positive integer, dimensionality of `z`.
        likelihood: `"gaussian"` (default; diagonal, learned scale) or
            `"bernoulli"` (for data in [0, 1]; non-binary values give the
            usual continuous cross-entropy).
        recurrence: `"lstm"` (default) or `"gru"`.
        feature_units: Positive integer, width of `phi_x(x)` and `phi_z(z)`.
            Defaults to `units`.
        hidden_units: Positive integer, width of the hidden layer of the
            prior, encoder and decoder. Defaults to `units`.
        activation: Activation of the feature and hidden layers (`"relu"`).
        min_scale: Positive float, the floor added to every softplus scale
            (prior, posterior, Gaussian decoder). Guards against NaN losses
            when a scale collapses.
        inference_latent: `z_t` when `training` is false: `"sample"`
            (default, a sample of the posterior: the model's own ELBO) or
            `"mean"` (the posterior mean `mu_z`: deterministic outputs).
        kernel_initializer: Initializer of the feed-forward kernels and of
            the MLP columns of `recurrent_kernel`.
        recurrent_initializer: Initializer of the recurrence columns of
            `recurrent_kernel` (`"orthogonal"`).
        bias_initializer: Initializer of the biases.
        unit_forget_bias: If `True` and `recurrence="lstm"`, initialize the
            forget-gate bias to 1 (the other biases still use
            `bias_initializer`), as `keras.layers.LSTMCell` does.
        kernel_regularizer: Regularizer of the feed-forward kernels.
        recurrent_regularizer: Regularizer of `recurrent_kernel`.
        bias_regularizer: Regularizer of the biases.
        seed: Integer seed of the latent samples.
        packed_output: If `True`, the output of each step is the packed
            float32 vector described in `unpack` instead of `h_t` (`VRNN`
            sets this).

    Call arguments:
        inputs: A 2-D tensor `(batch, features)`.
        states: List of the previous states: `h` and `c` (LSTM) or `h`
            (GRU), each `(batch, units)`.
        training: Python boolean: reparameterized posterior sample when true,
            `inference_latent` otherwise.

    Example:

    >>> inputs = np.random.random((32, 10, 8)).astype("float32")
    >>> cell = keras_mrnn.VRNNCell(16, latent_dim=4, inference_latent="mean")
    >>> rnn = keras.layers.RNN(cell)
    >>> tuple(rnn(inputs).shape)
    (32, 16)
    """

    def __init__(
        self,
        units,
        latent_dim,
        likelihood="gaussian",
        recurrence="lstm",
        feature_units=None,
        hidden_units=None,
        activation="relu",
        min_scale=1e-4,
        inference_latent="sample",
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        seed=None,
        packed_output=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check.positive_int("units", units)
        self.latent_dim = check.positive_int("latent_dim", latent_dim)
        self.likelihood = check.choice("likelihood", likelihood, LIKELIHOODS)
        self.recurrence = check.choice("recurrence", recurrence, RECURRENCES)
        self.feature_units = check.positive_int(
            "feature_units",
            self.units if feature_units is None else feature_units,
        )
        self.hidden_units = check.positive_int(
            "hidden_units",
            self.units if hidden_units is None else hidden_units,
        )
        self.min_scale = check.positive_float("min_scale", min_scale)
        self.inference_latent = check.choice(
            "inference_latent", inference_latent, LATENT_MODES
        )
        self.unit_forget_bias = check.boolean(
            "unit_forget_bias", unit_forget_bias
        )
        # The activations, initializers, regularizers and constraints among
        # the arguments, from their identifiers (as keras.layers.LSTMCell).
        self._set_objects(locals())
        self._set_seed(seed)
        self.packed_output = check.boolean("packed_output", packed_output)

        self._gates = 4 if self.recurrence == "lstm" else 3
        self._rnn_width = self._gates * self.units
        self.state_size = (
            [self.units, self.units]
            if self.recurrence == "lstm"
            else [self.units]
        )
        self.input_dim = None

    @property
    def output_size(self):
        if not self.packed_output:
            return self.units
        if self.input_dim is None:
            return None
        return self.packed_size(self.input_dim)

    def _decoder_layout(self, input_dim):
        """The decoder's parameters of a step, for `input_dim` features."""
        if self.likelihood == "gaussian":
            return PackedLayout([("x_loc", input_dim), ("x_scale", input_dim)])
        return PackedLayout([("x_logits", input_dim)])

    def _packed_layout(self, input_dim):
        """The fields of the packed per-step output (see `unpack`)."""
        latent = self.latent_dim
        return PackedLayout([
            ("h", self.units), ("kl", SCALAR), ("nll", SCALAR),
            ("z", latent), ("prior_loc", latent), ("prior_scale", latent),
            ("posterior_loc", latent), ("posterior_scale", latent),
            *self._decoder_layout(input_dim).fields,
        ])

    def decoder_size(self, input_dim):
        """Number of decoder parameters per step for `input_dim` features."""
        return self._decoder_layout(input_dim).size

    def packed_size(self, input_dim):
        """Width of the packed per-step output for `input_dim` features."""
        return self._packed_layout(input_dim).size

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        self._check_step_shape(input_shape)
        self.input_dim = int(input_shape[-1])
        units, hidden = self.units, self.hidden_units
        features, latent = self.feature_units, self.latent_dim
        rnn_width = self._rnn_width

        def kernel(name, shape):
            return self._add_weight(name, shape, "kernel")

        def bias(name, width, initializer=None):
            return self._add_weight(name, (width,), "bias", initializer)

        def input_bias_initializer(shape, dtype=None):
            value = self.bias_initializer(shape, dtype=dtype)
            if not (self.unit_forget_bias and self.recurrence == "lstm"):
                return value
            # As keras.layers.LSTMCell: the forget block is set to one.
            start = hidden + units
            return ops.concatenate([
                value[:start],
                ops.ones((units,), dtype=dtype),
                value[start + units:],
            ])

        def recurrent_initializer(shape, dtype=None):
            return ops.concatenate([
                self.kernel_initializer((units, 3 * hidden), dtype=dtype),
                self.recurrent_initializer((units, rnn_width), dtype=dtype),
            ], axis=-1)

        self.phi_x_kernel = kernel("phi_x_kernel", (self.input_dim, features))
        self.phi_x_bias = bias("phi_x_bias", features)
        self.phi_z_kernel = kernel("phi_z_kernel", (latent, features))
        self.phi_z_bias = bias("phi_z_bias", features)
        self.input_kernel = kernel(
            "input_kernel", (features, hidden + rnn_width)
        )
        self.input_bias = bias(
            "input_bias", hidden + rnn_width, input_bias_initializer
        )
        self.recurrent_kernel = self._add_weight(
            "recurrent_kernel",
            (units, 3 * hidden + rnn_width),
            "recurrent",
            recurrent_initializer,
        )
        self.recurrent_bias = bias("recurrent_bias", 3 * hidden + rnn_width)
        self.latent_kernel = kernel(
            "latent_kernel", (features, hidden + rnn_width)
        )
        self.prior_kernel = kernel("prior_kernel", (hidden, 2 * latent))
        self.prior_bias = bias("prior_bias", 2 * latent)
        self.encoder_kernel = kernel("encoder_kernel", (hidden, 2 * latent))
        self.encoder_bias = bias("encoder_bias", 2 * latent)
        decoder_size = self.decoder_size(self.input_dim)
        self.decoder_kernel = kernel("decoder_kernel", (hidden, decoder_size))
        self.decoder_bias = bias("decoder_bias", decoder_size)
        self.built = True

    # ------------------------------------------------------------------ maths
    # `VRNN` projects whole sequences before its loop. Projected per step,
    # the input MLP's matmul, bias and ReLU get fused by TensorFlow's CPU
    # graph optimizer, whose fused ReLU maps NaN to 0: a NaN input would
    # then vanish from h_t instead of showing (tests/test_reliability.py).
    project_before_loop = True

    def call(self, inputs, states, training=False):
        # The step-by-step path of a plain `keras.layers.RNN` (`VRNN` and
        # the analysis methods project whole sequences before their loop,
        # never inside it).
        if self._latent_mode(training, None) == "sample" and (
            _backend.seeds_frozen_here(self.seed_generator, inputs)
        ):
            raise ValueError(
                f"VRNNCell '{self.name}' draws its latent noise inside a "
                "JAX loop (keras.layers.RNN runs the cell in jax.lax.scan), "
                "where the seed generator cannot advance: every step and "
                "call would repeat the same noise. Use keras_mrnn.VRNN, "
                "which draws the noise of all steps before its loop, or "
                "inference_latent='mean' outside training."
            )
        return super().call(inputs, states, training=training)

    def _latent_mode(self, training, latent):
        """How `z_t` is taken: `latent` when given, else a sample when
        training and `inference_latent` otherwise."""
        if latent is not None:
            return check.choice("latent", latent, LATENT_MODES)
        return "sample" if training else self.inference_latent

    def project_inputs(self, inputs, training=False, latent=None,
                       seed_generator=None):
        """Input part of a step, for one step or a whole sequence, with the
        standard-normal noise of the posterior samples.

        The noise is drawn here, not in `step`: `VRNN` calls this on the
        whole sequence before its loop, and on JAX a seed generator
        advanced inside the loop (a `lax.scan`) would repeat the same noise
        at every step and call. `step` reparameterizes it into
        `z_t = mu_z + sigma_z * eps_t`.

        Args:
            inputs: `(batch, features)` or `(batch, time, features)`.
            training: Python boolean: draws the noise when true (and the
                cell's `inference_latent` is `"sample"` otherwise).
            latent: `"sample"` or `"mean"` to force how `z_t` will be taken
                (`step` must get the same); `None` (default) as `training`
                says.
            seed_generator: `keras.random.SeedGenerator` of the noise;
                defaults to the cell's own.

        Returns:
            `[x, phi_x(x) @ input_kernel + input_bias, eps]`, with last
            dimension `features + hidden_units + G * units` (G = 4 for the
            LSTM, 3 for the GRU), `+ latent_dim` when `z` is sampled (`eps`,
            standard normal), in the compute dtype or float32, whichever is
            wider.
        """
        # `x` is also the likelihood target: under a float16 policy it stays
        # float32 (rounding it would shift the NLL), and so does the packed
        # tensor; `step` casts the projection back, losslessly.
        dtype = keras.backend.result_type(self.compute_dtype, "float32")
        target = ops.cast(inputs, dtype)
        parts = [target]
        inputs = ops.cast(inputs, self.compute_dtype)
        phi_x = self.activation(
            ops.matmul(inputs, self.phi_x_kernel) + self.phi_x_bias
        )
        projected = ops.matmul(phi_x, self.input_kernel) + self.input_bias
        parts.append(ops.cast(projected, dtype))
        if self._latent_mode(training, latent) == "sample":
            generator = (
                self.seed_generator if seed_generator is None
                else seed_generator
            )
            shape = tuple(ops.shape(inputs)[:-1]) + (self.latent_dim,)
            eps = keras.random.normal(shape, dtype="float32", seed=generator)
            parts.append(ops.cast(eps, dtype))
        return ops.concatenate(parts, axis=-1)

    def generation_noise(self, batch_size, num_steps, decode="sample",
                         seed_generator=None):
        """The noise of `generate_step` for `num_steps` steps, drawn at once
        (for the same reason as `project_inputs` draws the posterior's).

        Args:
            batch_size: Number of sequences.
            num_steps: Number of steps.
            decode: `"sample"` adds the decoder's noise, `"mean"` does not.
            seed_generator: `keras.random.SeedGenerator`; defaults to the
                cell's own.

        Returns:
            A float32 tensor `(batch_size, num_steps, latent_dim)`, then
            `features` more columns with `decode="sample"`: standard normal
            for the prior's `z_t`, then standard normal (Gaussian decoder)
            or uniform on [0, 1) (Bernoulli decoder) for `x_t`.
        """
        check.choice("decode", decode, DECODE_MODES)
        generator = (
            self.seed_generator if seed_generator is None else seed_generator
        )
        shape = (batch_size, num_steps)
        parts = [keras.random.normal(
            shape + (self.latent_dim,), dtype="float32", seed=generator
        )]
        if decode == "sample":
            draw = (
                keras.random.normal if self.likelihood == "gaussian"
                else keras.random.uniform
            )
            parts.append(draw(
                shape + (self.input_dim,), dtype="float32", seed=generator
            ))
        return ops.concatenate(parts, axis=-1)

    def _gaussian(self, hidden, kernel, bias):
        params = ops.cast(ops.matmul(hidden, kernel) + bias, "float32")
        loc = params[:, : self.latent_dim]
        scale = ops.softplus(params[:, self.latent_dim :]) + self.min_scale
        return loc, scale

    def _decode(self, z, recurrent):
        """Decoder parameters (a dict of float32 tensors, see
        `_decoder_layout`) and the latent part of the input."""
        hidden = self.hidden_units
        phi_z = self.activation(
            ops.matmul(ops.cast(z, self.compute_dtype), self.phi_z_kernel)
            + self.phi_z_bias
        )
        latent_part = ops.matmul(phi_z, self.latent_kernel)
        decoder_hidden = self.activation(
            latent_part[:, :hidden] + recurrent[:, 2 * hidden : 3 * hidden]
        )
        params = ops.cast(
            ops.matmul(decoder_hidden, self.decoder_kernel)
            + self.decoder_bias,
            "float32",
        )
        params = self._decoder_layout(self.input_dim).unpack(params)
        if self.likelihood == "gaussian":
            params["x_scale"] = (
                ops.softplus(params["x_scale"]) + self.min_scale
            )
        return params, latent_part[:, hidden:]

    def _decoder_distribution(self, params):
        tfd = _backend.distributions()
        if self.likelihood == "gaussian":
            return tfd.Normal(params["x_loc"], params["x_scale"])
        return tfd.Bernoulli(logits=params["x_logits"], dtype="float32")

    def _split_projected(self, projected):
        """`project_inputs` of a step as `(x, encoder part, input part,
        eps)`: the float32 target, the compute-dtype parts of the encoder's
        hidden layer and of the recurrence, and the float32 noise of `z_t`
        (`None` when none was drawn)."""
        dim, hidden = self.input_dim, self.hidden_units
        end = dim + hidden + self._rnn_width
        x = ops.cast(projected[:, :dim], "float32")
        encoder_part = ops.cast(
            projected[:, dim : dim + hidden], self.compute_dtype
        )
        input_part = ops.cast(
            projected[:, dim + hidden : end], self.compute_dtype
        )
        eps = None
        if projected.shape[-1] == end + self.latent_dim:
            eps = ops.cast(projected[:, end:], "float32")
        return x, encoder_part, input_part, eps

    def _prior(self, states):
        """What a step computes from `h_{t-1}` alone, before `z_t`.

        Returns:
            `(recurrent, prior_loc, prior_scale)`: `recurrent` is
            `h_{t-1} @ recurrent_kernel + recurrent_bias`, the recurrent
            part of every MLP and of the recurrence (its columns are those
            of `recurrent_kernel`); the prior's parameters are float32.
        """
        recurrent = (
            ops.matmul(states[0], self.recurrent_kernel) + self.recurrent_bias
        )
        prior_loc, prior_scale = self._gaussian(
            self.activation(recurrent[:, : self.hidden_units]),
            self.prior_kernel,
            self.prior_bias,
        )
        return recurrent, prior_loc, prior_scale

    def _transition(self, input_part, latent_part, recurrent, states):
        """The new states from the input's, the latent's and the recurrent
        parts of the recurrence."""
        units = self.units
        input_part = input_part + latent_part
        recurrent_part = recurrent[:, 3 * self.hidden_units :]
        sigmoid, tanh = ops.sigmoid, ops.tanh
        if self.recurrence == "lstm":
            gates = input_part + recurrent_part
            i = sigmoid(gates[:, :units])
            f = sigmoid(gates[:, units : 2 * units])
            g = tanh(gates[:, 2 * units : 3 * units])
            o = sigmoid(gates[:, 3 * units :])
            c = f * states[1] + i * g
            return [o * tanh(c), c]
        update = sigmoid(input_part[:, :units] + recurrent_part[:, :units])
        reset = sigmoid(
            input_part[:, units : 2 * units]
            + recurrent_part[:, units : 2 * units]
        )
        candidate = tanh(
            input_part[:, 2 * units :] + reset * recurrent_part[:, 2 * units :]
        )
        return [update * states[0] + (1.0 - update) * candidate]

    def step(self, projected, states, training=False, latent=None):
        """One recurrent step given the projected inputs of this step.

        Args:
            projected: `project_inputs(x_t)`, with the noise `eps_t` when
                `z_t` is sampled.
            states: The previous states, as in `call`.
            training: Python boolean.
            latent: `"sample"` or `"mean"` to force how `z_t` is taken;
                `None` (default) samples when training and uses
                `inference_latent` otherwise. Must be what `project_inputs`
                was given.

        Returns:
            `(output, new_states)` as in `call`.
        """
        tfd = _backend.distributions()
        hidden = self.hidden_units
        x, encoder_part, input_part, eps = self._split_projected(projected)
        recurrent, prior_loc, prior_scale = self._prior(states)
        encoder_hidden = self.activation(
            encoder_part + recurrent[:, hidden : 2 * hidden]
        )
        loc, scale = self._gaussian(
            encoder_hidden, self.encoder_kernel, self.encoder_bias
        )
        if self._latent_mode(training, latent) == "sample":
            if eps is None:
                raise ValueError(
                    f"VRNNCell '{self.name}' samples z_t but `projected` "
                    "holds no noise: call `project_inputs` with the same "
                    "`training` and `latent` as `step`."
                )
            # The reparameterized posterior sample: the gradient reaches
            # the encoder's mean and scale through it.
            z = loc + scale * eps
        else:
            z = loc
        decoder_params, latent_part = self._decode(z, recurrent)
        new_states = self._transition(
            input_part, latent_part, recurrent, states
        )
        if not self.packed_output:
            return new_states[0], new_states
        posterior = tfd.Normal(loc, scale)
        prior = tfd.Normal(prior_loc, prior_scale)
        kl = ops.sum(tfd.kl_divergence(posterior, prior), axis=-1)
        nll = -ops.sum(
            self._decoder_distribution(decoder_params).log_prob(x), axis=-1
        )
        output = self._packed_layout(self.input_dim).pack({
            "h": new_states[0], "kl": kl, "nll": nll, "z": z,
            "prior_loc": prior_loc, "prior_scale": prior_scale,
            "posterior_loc": loc, "posterior_scale": scale,
            **decoder_params,
        }, dtype="float32")
        return output, new_states

    def generate_step(self, noise, states, decode="sample"):
        """One generative step: `z_t` from the prior, `x_t` from the decoder.

        Args:
            noise: This step of `generation_noise(..., decode=decode)`,
                `(batch, latent_dim [+ features])`.
            states: The previous states.
            decode: `"sample"` draws `x_t` from the decoder, `"mean"` takes
                its mean (Gaussian `mu_x`, Bernoulli probabilities).

        Returns:
            `(x_t, new_states)`, `x_t` a float32 `(batch, features)` tensor.
        """
        check.choice("decode", decode, DECODE_MODES)
        latent = self.latent_dim
        noise = ops.cast(noise, "float32")
        recurrent, prior_loc, prior_scale = self._prior(states)
        z = prior_loc + prior_scale * noise[:, :latent]
        decoder_params, latent_part = self._decode(z, recurrent)
        if decode == "mean":
            x = self._decoder_distribution(decoder_params).mean()
        elif self.likelihood == "gaussian":
            x = decoder_params["x_loc"] + (
                decoder_params["x_scale"] * noise[:, latent:]
            )
        else:
            # A uniform draw below p is a draw of Bernoulli(p).
            probs = ops.sigmoid(decoder_params["x_logits"])
            x = ops.cast(noise[:, latent:] < probs, "float32")
        x = ops.cast(x, "float32")
        _, _, input_part, _ = self._split_projected(
            self.project_inputs(x, latent="mean")
        )
        new_states = self._transition(
            input_part, latent_part, recurrent, states
        )
        return x, new_states

    def unpack(self, packed):
        """Splits packed outputs into named float32 tensors.

        The packed vector is, in order: `h` (`units`), `kl` (1), `nll` (1),
        `z`, `prior_loc`, `prior_scale`, `posterior_loc`, `posterior_scale`
        (`latent_dim` each), then `x_loc` and `x_scale` (Gaussian) or
        `x_logits` (Bernoulli), `features` each.

        Args:
            packed: Tensor `(..., packed_size(features))`.

        Returns:
            A dict of tensors `(..., n)`; `kl` and `nll` are `(...)`.
        """
        return self._packed_layout(self.input_dim).unpack(
            ops.cast(packed, "float32")
        )


class _CarriedMean(keras.metrics.Mean):
    """`keras.metrics.Mean` for a tracker updated in a layer's `call`, on
    JAX (`VRNN` uses it there, and `keras.metrics.Mean` elsewhere).

    JAX's trainer runs the layers in a stateless call that maps the
    model's trainable and non-trainable variables, not its metrics'
    (keras-team/keras#21639): a tracker updated there reads unmapped,
    purged variables (a `TypeError`), and its updates would be dropped.
    So `VRNN.variables` lists this tracker's variables (not among the
    weights, so never saved), which JAX's steps then carry from batch to
    batch and write back at the end of each epoch, like a seed
    generator's state; and the tracker lists none of its own: the trainer
    carries metrics in a second copy of the state that never sees the
    layer's updates, and writes it back last.

    The values are therefore known once the trainer has written the state
    back: the epoch's logs (`History`, `evaluate`, callbacks'
    `on_epoch_end`) hold them. Inside the compiled step, where the
    per-batch logs are made (progress bar, `on_train_batch_end`,
    `train_on_batch`), the state is out of reach and the result is NaN.
    """

    @property
    def variables(self):
        return []

    @property
    def state_variables(self):
        """The tracker's variables (what `variables` gives on a plain
        metric)."""
        return [self.total, self.count]

    def reset_state(self):
        for variable in self.state_variables:
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def result(self):
        if _internals.in_stateless_scope():
            # JAX's compiled step: the state is carried beside it, unread.
            return ops.convert_to_tensor(float("nan"), dtype=self.dtype)
        return super().result()


@keras.saving.register_keras_serializable(package="keras_mrnn")
class VRNN(VRNNAnalysis, SteppedRNN, keras.layers.RNN):
    """Variational RNN layer (Chung et al., 2015) that trains itself.

    A `keras.layers.RNN` over a `VRNNCell` that computes `phi_x(x_t)` for all
    time steps before the recurrent loop, adds the negative ELBO of its input
    to the model's losses and reports it as metrics. A model whose only loss
    is the VRNN's trains with `model.compile(optimizer)` and `model.fit(x)`.

    The added loss is `mean_t [kl_weight * KL_t + NLL_t]`, averaged over the
    batch and the valid (unmasked) time steps, in nats per time step.
    `kl_weight` lives in a non-trainable variable read by the compiled step,
    so `callbacks.KLWarmup` (or the `kl_weight` property) can change it while
    a model trains, also with `jit_compile=True`. The metrics
    `{name}_kl`, `{name}_nll` and `{name}_elbo` (`name` the layer's name; the
    ELBO is `-(KL + NLL)`, never weighted) are averages over all valid steps
    seen since the last reset, i.e. per epoch in `fit` and `evaluate`, and
    show in the progress bar and `History`. On JAX, whose trainer does not
    carry the metrics of layers through its compiled steps, they are known
    when the step's state is written back: `History`, `evaluate` and the
    callbacks' `on_epoch_end` get them, the per-batch logs (progress bar
    during the epoch, `on_train_batch_end`, `train_on_batch`) get NaN (see
    `_CarriedMean`). While the KL weight is below 1
    (KL warm-up) `loss` and `val_loss` are not the negative ELBO: monitor
    `val_{name}_elbo` in callbacks such as `EarlyStopping`.

    The layer's output (what later layers see) is `h_t`, the deterministic
    state after reading `x_t` and `z_t`: it summarizes `x_1..x_t`. `infer`
    gives the other per-step quantities (`z`, prior and posterior parameters,
    decoder parameters, KL, NLL); `reconstruct`, `sample` and
    `log_likelihood` the model's reconstructions, samples and
    importance-weighted log-likelihood (see `_vrnn_analysis.py`).

    Args:
        units: Positive integer, dimensionality of `h` and of the output.
        latent_dim: Positive integer, dimensionality of `z`.
        likelihood: `"gaussian"` (default) or `"bernoulli"` (see
            `VRNNCell`).
        recurrence: `"lstm"` (default) or `"gru"`.
        kl_weight: Non-negative float, the initial weight of the KL term.
        return_sequences: Whether to return `h` for every step or only the
            last `h`.
        return_state: Whether to return the last states after the output.
        go_backwards: If `True`, process (and model) the sequence backwards.
            Outputs come in processing order, as in Keras.
        stateful: If `True`, the last states of batch i are the initial
            states of batch i+1 (truncated backpropagation over consecutive
            chunks); needs a static batch size.
        unroll: If `True`, unroll the loop (short sequences only).
        zero_output_for_mask: Whether masked steps output zeros.
        loop_jit_compile: `"auto"` (default), `True` or `False`: compile
            the layer's own recurrent loop with XLA. `"auto"` does it on a
            GPU, inside a `tf.function` (`fit`, `evaluate`, `predict`, also
            under a `tf.distribute` strategy), when the model step is not
            already XLA-compiled; see the README, "Running on a GPU".
        **kwargs: The other arguments of `VRNNCell` (`feature_units`,
            `hidden_units`, `activation`, `min_scale`, `inference_latent`,
            initializers, regularizers, `seed`) and of `keras.layers.Layer`.

    Call arguments:
        inputs: A 3-D tensor `(batch, time, features)`.
        mask: Optional boolean tensor `(batch, time)`; masked steps add
            nothing to the loss and metrics.
        training: Python boolean: reparameterized posterior samples when
            true, the cell's `inference_latent` otherwise.
        initial_state: Optional list of initial state tensors.

    Returns:
        `h` (`(batch, units)`, or `(batch, time, units)` with
        `return_sequences`), then the states with `return_state`.

    Example:

    >>> x = np.random.random((64, 20, 3)).astype("float32")
    >>> model = keras.Sequential([
    ...     keras.Input((20, 3)), keras_mrnn.VRNN(16, latent_dim=4)])
    >>> model.compile(keras.optimizers.Adam(1e-3))
    >>> history = model.fit(x, epochs=2, verbose=0)
    >>> sorted(history.history)
    ['loss', 'vrnn_elbo', 'vrnn_kl', 'vrnn_nll']
    >>> tuple(model.layers[0].sample(50, batch_size=2, seed=1).shape)
    (2, 50, 3)
    """

    _needs_all_outputs = True
    _cell_class = VRNNCell
    _cell_name = "vrnn_cell"
    _derived_cell_arguments = ("packed_output",)

    def __init__(
        self,
        units,
        latent_dim,
        likelihood="gaussian",
        recurrence="lstm",
        kl_weight=1.0,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        **kwargs,
    ):
        self.kl_weight = kl_weight
        cell = self._make_cell(
            kwargs,
            units=units,
            latent_dim=latent_dim,
            likelihood=likelihood,
            recurrence=recurrence,
            packed_output=True,
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
        tracker = (
            _CarriedMean if _backend.name() == "jax" else keras.metrics.Mean
        )
        self.kl_tracker = tracker(name=f"{self.name}_kl")
        self.nll_tracker = tracker(name=f"{self.name}_nll")
        self.elbo_tracker = tracker(name=f"{self.name}_elbo")

    def build(self, sequences_shape, initial_state_shape=None):
        super().build(sequences_shape, initial_state_shape)
        type(self).kl_weight.add_variable(self)
        self.built = True

    def _carried_variables(self):
        carried = super()._carried_variables()
        # On JAX the trackers' state is the layer's (see `_CarriedMean`).
        for name in ("kl_tracker", "nll_tracker", "elbo_tracker"):
            # Also asked for while `__init__` runs, before the trackers.
            tracker = getattr(self, name, None)
            if isinstance(tracker, _CarriedMean):
                carried += tracker.state_variables
        return carried

    @property
    def input_dtype(self):
        # Keras casts a layer's inputs to this dtype: keep them float32
        # under a float16 policy, since they are the likelihood target too
        # (the cell casts them for its matmuls).
        return self.variable_dtype

    # Convenience accessors, as on keras.layers.LSTM.
    units = property(lambda self: self.cell.units)
    latent_dim = property(lambda self: self.cell.latent_dim)
    likelihood = property(lambda self: self.cell.likelihood)
    recurrence = property(lambda self: self.cell.recurrence)

    # A variable, so that a compiled model reads its current value.
    kl_weight = ScheduledScalar(
        check.non_negative_float,
        "The current weight of the KL term, as a Python float.",
    )

    # ---------------------------------------------------------- training loss
    def _unpack(self, last_output, outputs, mask, training):
        parts = self.cell.unpack(outputs)
        kl, nll = parts["kl"], parts["nll"]
        weights = self._step_weights(mask, kl)
        self.add_loss(
            self._kl_weight * self._weighted_mean(kl, weights)
            + self._weighted_mean(nll, weights)
        )
        self.kl_tracker.update_state(kl, sample_weight=weights)
        self.nll_tracker.update_state(nll, sample_weight=weights)
        self.elbo_tracker.update_state(-(kl + nll), sample_weight=weights)
        h = parts["h"] if self.return_sequences else (
            self.cell.unpack(last_output)["h"]
        )
        return [ops.cast(h, self.compute_dtype)]

    def get_config(self):
        return {**super().get_config(), "kl_weight": self.kl_weight}


# The examples of the analysis methods run with this module's docstrings
# (tests/test_docstrings.py collects `__test__`).
__test__ = {
    f"VRNN.{name}": getattr(VRNNAnalysis, name)
    for name in ("infer", "reconstruct", "sample", "log_likelihood")
}
