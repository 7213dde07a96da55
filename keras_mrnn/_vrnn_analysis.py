"""The analysis methods of `VRNN`: `infer`, `reconstruct`, `sample` and
`log_likelihood` (private).

`VRNN` inherits them from `VRNNAnalysis`, so users call them on the layer;
they live here so that `vrnn.py` reads as a cell and a layer. They use the
layer's cell (`project_inputs`, `step`, `generate_step`, `unpack`) in
inference mode, through the package's one recurrent loop.
"""

import contextlib
import math

import keras
from keras import ops

from keras_mrnn import _backend
from keras_mrnn import _internals
from keras_mrnn import _validation as check
from keras_mrnn._rnn import recurrent_loop

# How `z_t` (`latent`, and `VRNNCell(inference_latent=...)`) and `x_t`
# (`decode`) are taken: a draw, or the distribution's mean.
LATENT_MODES = ("sample", "mean")
DECODE_MODES = ("sample", "mean")


def _safe_masked_steps(parts, mask):
    """`unpack`ed parts with the masked steps' values made harmless.

    Masked steps hold zeros in the packed outputs (leading steps, and every
    masked step with `zero_output_for_mask=True`) or the last valid step's
    values: a zero scale makes `Normal(0, 0).log_prob(0)` NaN, and NaN
    times a zero step weight stays NaN (in values and gradients). So every
    masked step gets loc, z, KL, NLL 0 and scales 1 before any
    distribution is built; the caller still gives these steps zero weight.

    Args:
        parts: Dict of `(batch, time, ...)` tensors from `VRNNCell.unpack`.
        mask: Boolean `(batch, time)`, true for valid steps.

    Returns:
        A dict of the same tensors.
    """
    valid = ops.cast(mask, "bool")
    scales = ("prior_scale", "posterior_scale", "x_scale")
    safe = {}
    for name, value in parts.items():
        where = valid if len(value.shape) == 2 else valid[..., None]
        fill = 1.0 if name in scales else 0.0
        safe[name] = ops.where(where, value, ops.cast(fill, value.dtype))
    return safe


class VRNNAnalysis:
    """Mixin of `VRNN`: the model's per-step quantities, reconstructions,
    samples and log-likelihood.

    Each method runs its loop in `_backend.function` (a `tf.function` on
    TensorFlow, cached on the layer by `SteppedRNN._cached`: neither saved
    nor counted as a weight; the plain function elsewhere, where JAX runs
    the loop as one `lax.scan`). One seed generator serves every call, its
    state set from `seed` at each; all the noise a loop needs is drawn
    from it before the loop (`VRNNCell.project_inputs`,
    `VRNNCell.generation_noise`), since on JAX a generator advanced inside
    the loop would repeat the same noise. No AutoGraph: the functions hold
    no tensor-dependent Python control flow, and AutoGraph fails on them
    with some gast versions (a loud warning).
    """

    def _seed_generator(self):
        """The seed generator of every analysis call, made once."""
        return self._cached(
            "generator", lambda: keras.random.SeedGenerator(0)
        )

    def _analysis_variables(self):
        """What the analysis loops read and assign: the layer's variables
        and the analysis seed generator's state (JAX's compiled version
        takes them as arguments, see `_backend.function`)."""
        held = {id(v): v for v in self.variables}
        held[id(self._seed_generator().state)] = self._seed_generator().state
        return list(held.values())

    def _generator(self, seed):
        """The seed generator, its state set from `seed` (or a fresh one)."""
        check.optional_seed("seed", seed)
        generator = self._seed_generator()
        if seed is None:
            seed = _internals.make_default_seed()
        generator.state.assign(
            ops.convert_to_tensor([seed, 0], dtype=generator.state.dtype)
        )
        return generator

    def _autocast(self):
        if self.cell.compute_dtype != self.cell.variable_dtype:
            return _internals.AutocastScope(self.cell.compute_dtype)
        return contextlib.nullcontext()

    def _prepare(self, x):
        x = ops.convert_to_tensor(x)
        check.sequence_shape(self.name, x.shape)
        if not self.built:
            self.build(tuple(x.shape))
        if x.shape[-1] != self.cell.input_dim:
            raise ValueError(
                f"Layer '{self.name}' was built for {self.cell.input_dim} "
                f"features. Received input with shape {x.shape}."
            )
        return ops.cast(x, self.input_dtype)

    def _scan(self, x, mask=None, latent=None, initial_state=None):
        """Packed per-step outputs `(batch, time, packed)` in input order.

        Runs the loop from `initial_state` (zeros by default), never from or
        into the states of a stateful layer; the noise of `z` is drawn from
        the analysis seed generator (see `_generator`) before the loop.
        """
        cell = self.cell
        generator = self._seed_generator()

        def scan(x, mask, initial_state):
            with self._autocast():
                projected = cell.project_inputs(
                    x, latent=latent, seed_generator=generator
                )

                def step(inputs, states):
                    return cell.step(
                        inputs, states, training=False, latent=latent
                    )

                _, outputs, _ = recurrent_loop(
                    step,
                    projected,
                    initial_state,
                    go_backwards=self.go_backwards,
                    mask=mask,
                    zero_output_for_mask=self.zero_output_for_mask,
                )
            if self.go_backwards:
                outputs = ops.flip(outputs, axis=1)
            return outputs

        function = self._cached(
            f"scan_{latent}",
            lambda: _backend.function(scan, self._analysis_variables),
        )
        if mask is not None:
            mask = ops.convert_to_tensor(mask, dtype="bool")
            check.mask_shape(self.name, tuple(mask.shape), tuple(x.shape))
        states = self._state_tensors(initial_state, ops.shape(x)[0])
        return function(x, mask, states)

    def infer(self, x, latent=None, seed=None, mask=None, initial_state=None):
        """Runs the model on `x` and returns every per-step quantity.

        Inference mode: `z_t` is a posterior sample or mean as `latent` (or
        the cell's `inference_latent`) says. The states of a stateful layer
        are neither read nor changed.

        Args:
            x: Array or tensor `(batch, time, features)`.
            latent: `"sample"`, `"mean"` or `None` (the cell's
                `inference_latent`).
            seed: Integer seed of the latent samples (the same seed gives the
                same samples), or `None`.
            mask: Optional boolean `(batch, time)`.
            initial_state: Optional list of initial states (zeros by
                default).

        Returns:
            A dict of float32 tensors in input time order: `h`
            `(batch, time, units)`; `kl` and `nll` `(batch, time)` (nats);
            `z`, `prior_loc`, `prior_scale`, `posterior_loc`,
            `posterior_scale` `(batch, time, latent_dim)`; `x_loc` and
            `x_scale` (Gaussian) or `x_logits` (Bernoulli)
            `(batch, time, features)`.

        Example:

        >>> layer = keras_mrnn.VRNN(8, latent_dim=2)
        >>> out = layer.infer(np.zeros((4, 10, 3), "float32"))
        >>> tuple(out["z"].shape), tuple(out["kl"].shape)
        ((4, 10, 2), (4, 10))
        """
        if latent is None:
            latent = self.cell.inference_latent
        check.choice("latent", latent, LATENT_MODES)
        x = self._prepare(x)
        self._generator(seed)
        outputs = self._scan(
            x, mask=mask, latent=latent, initial_state=initial_state
        )
        return self.cell.unpack(outputs)

    def reconstruct(self, x, decode="mean", latent=None, seed=None,
                    mask=None):
        """Reconstructs `x` through the posterior and the decoder.

        Each `x_t` is encoded into `z_t` (posterior sample or mean, see
        `latent`) and decoded from `(z_t, h_{t-1})`.

        Args:
            x: Array or tensor `(batch, time, features)`.
            decode: `"mean"` (default: the Gaussian mean or the Bernoulli
                probabilities) or `"sample"` (a draw of the decoder).
            latent: `"sample"`, `"mean"` or `None` (the cell's
                `inference_latent`).
            seed: Integer seed, or `None`.
            mask: Optional boolean `(batch, time)`.

        Returns:
            A float32 tensor shaped like `x`.

        Example:

        >>> layer = keras_mrnn.VRNN(8, latent_dim=2, likelihood="bernoulli")
        >>> tuple(layer.reconstruct(np.zeros((4, 10, 3), "float32")).shape)
        (4, 10, 3)
        """
        check.choice("decode", decode, DECODE_MODES)
        parts = self.infer(x, latent=latent, seed=seed, mask=mask)
        generator = self._seed_generator()
        if self.cell.likelihood == "gaussian":
            loc, scale = parts["x_loc"], parts["x_scale"]
            if decode == "mean":
                return loc
            return loc + scale * keras.random.normal(
                ops.shape(loc), seed=generator
            )
        probs = ops.sigmoid(parts["x_logits"])
        if decode == "mean":
            return probs
        noise = keras.random.uniform(ops.shape(probs), seed=generator)
        return ops.cast(noise < probs, "float32")

    def sample(self, num_steps, batch_size=1, seed=None, decode="sample",
               initial_state=None):
        """Generates sequences from the model.

        At each step draws `z_t` from the prior `p(z_t | h_{t-1})`, decodes
        `x_t` from `p(x_t | z_t, h_{t-1})` and feeds it back into the
        recurrence. With `go_backwards=True` the model describes reversed
        sequences; the result is flipped back to input order.

        Args:
            num_steps: Positive integer, the length of the sequences.
            batch_size: Positive integer, how many sequences.
            seed: Integer seed (the same seed gives the same sequences) or
                `None`.
            decode: `"sample"` (default) draws each `x_t` from the decoder;
                `"mean"` takes its mean (Gaussian mean or Bernoulli
                probabilities). `z_t` is always sampled.
            initial_state: Optional list of initial states (zeros by
                default).

        Returns:
            A float32 tensor `(batch_size, num_steps, features)`.

        Example:

        >>> layer = keras_mrnn.VRNN(8, latent_dim=2)
        >>> layer.build((None, None, 3))
        >>> tuple(layer.sample(20, batch_size=4, seed=0).shape)
        (4, 20, 3)
        """
        num_steps = check.positive_int("num_steps", num_steps)
        batch_size = check.positive_int("batch_size", batch_size)
        check.choice("decode", decode, DECODE_MODES)
        if not self.built:
            raise ValueError(
                f"Layer '{self.name}' must be built (called on data or "
                "built with an input shape) before `sample()`: the number "
                "of features is unknown."
            )
        cell = self.cell
        generator = self._generator(seed)

        def generate(noise, initial_state):
            with self._autocast():

                def step(noise_t, states):
                    return cell.generate_step(noise_t, states, decode=decode)

                _, samples, _ = recurrent_loop(step, noise, initial_state)
            return samples

        function = self._cached(
            f"sample_{decode}",
            lambda: _backend.function(generate, self._analysis_variables),
        )
        # The loop runs over the noise of every step, drawn before it.
        noise = cell.generation_noise(
            batch_size, num_steps, decode=decode, seed_generator=generator
        )
        samples = function(
            noise, self._state_tensors(initial_state, batch_size)
        )
        if self.go_backwards:
            samples = ops.flip(samples, axis=1)
        return samples

    def log_likelihood(self, x, num_samples=100, seed=None, mask=None,
                       batch_size=None):
        """Importance-weighted estimate of `log p(x)` per sequence.

        Draws `num_samples` latent trajectories from the posterior for each
        sequence and returns
        `log (1/K) sum_k exp(sum_t [log p(x_t | z_t, h_{t-1})
        + log p(z_t | h_{t-1}) - log q(z_t | x_t, h_{t-1})])`, the bound of
        Burda et al. (2016). With one sample it is an unbiased estimate of
        the ELBO; its expectation grows with `num_samples` towards
        `log p(x)`.

        Args:
            x: Array or tensor `(batch, time, features)`.
            num_samples: Positive integer K, particles per sequence.
            seed: Integer seed (the same seed gives the same estimate), or
                `None`.
            mask: Optional boolean `(batch, time)`; masked steps are left
                out.
            batch_size: Positive integer: how many sequences to process at
                once (each as K particles), or `None` for all.

        Returns:
            A float32 tensor `(batch,)` in nats per sequence (divide by the
            number of steps for nats per step).

        Example:

        >>> layer = keras_mrnn.VRNN(8, latent_dim=2)
        >>> x = np.random.random((4, 10, 3)).astype("float32")
        >>> tuple(layer.log_likelihood(x, num_samples=16, seed=0).shape)
        (4,)
        """
        num_samples = check.positive_int("num_samples", num_samples)
        x = self._prepare(x)
        total = int(x.shape[0])
        if batch_size is None:
            batch_size = max(total, 1)
        batch_size = check.positive_int("batch_size", batch_size)
        if mask is not None:
            mask = ops.convert_to_tensor(mask, dtype="bool")
            check.mask_shape(self.name, tuple(mask.shape), tuple(x.shape))
        tfd = _backend.distributions()
        self._generator(seed)
        results = []
        for start in range(0, total, batch_size):
            chunk = x[start : start + batch_size]
            count = int(chunk.shape[0])
            repeated = ops.repeat(chunk, num_samples, axis=0)
            chunk_mask = None
            if mask is not None:
                chunk_mask = ops.repeat(
                    mask[start : start + batch_size], num_samples, axis=0
                )
            parts = self.cell.unpack(
                self._scan(repeated, mask=chunk_mask, latent="sample")
            )
            if chunk_mask is not None:
                parts = _safe_masked_steps(parts, chunk_mask)
            z = parts["z"]
            log_prior = tfd.Normal(
                parts["prior_loc"], parts["prior_scale"]
            ).log_prob(z)
            log_posterior = tfd.Normal(
                parts["posterior_loc"], parts["posterior_scale"]
            ).log_prob(z)
            log_weight = ops.sum(log_prior - log_posterior, axis=-1)
            log_weight = log_weight - parts["nll"]
            if chunk_mask is not None:
                log_weight = log_weight * ops.cast(chunk_mask, "float32")
            log_weight = ops.reshape(
                ops.sum(log_weight, axis=1), (count, num_samples)
            )
            results.append(
                ops.logsumexp(log_weight, axis=1) - math.log(num_samples)
            )
        return ops.concatenate(results, axis=0)
