"""The VRNN on whichever Keras backend runs (TensorFlow, JAX, PyTorch).

`.ci/run` runs the suite under TensorFlow, JAX and PyTorch.
Each compares with something independent of the backend's loop and trainer:
the closed-form KL and NLL written in NumPy, the same layer on trimmed or
reversed sequences, one pass against stateful chunks, the standardized
noise recovered from the outputs.
"""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import stats

import keras_mrnn
from _helpers import normal_log_pdf, randomize


BACKEND = keras.backend.backend()


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def gaussian_kl(m1, s1, m0, s0):
    """KL(N(m1, s1^2) || N(m0, s0^2)) summed over the last axis."""
    return np.sum(
        np.log(s0 / s1) + (s1**2 + (m1 - m0) ** 2) / (2.0 * s0**2) - 0.5,
        axis=-1,
    )


def make_layer(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    args = dict(units=5, latent_dim=3, feature_units=4, hidden_units=6,
                seed=seed, name="vrnn")
    args.update(kwargs)
    return keras_mrnn.VRNN(**args)


def cut_latent(layer):
    """`phi_z(z)` constant: `z` reaches neither `h` nor the decoder, so the
    KL and NLL no longer depend on the posterior noise."""
    kernel = layer.cell.phi_z_kernel
    kernel.assign(np.zeros(kernel.shape, "float32"))


# ------------------------------------------------------------------ noise
def test_posterior_noise_differs_by_row_step_and_call_and_repeats_by_seed():
    x = np.zeros((64, 10, 2), "float32")  # identical rows
    layer = make_layer()
    layer.build((None, None, 2))
    randomize(layer, seed=1)

    def eps(**kwargs):
        out = {k: _np(v) for k, v in layer.infer(x, latent="sample",
                                                **kwargs).items()}
        return (out["z"] - out["posterior_loc"]) / out["posterior_scale"]

    first, second = eps(), eps()
    flat = first.reshape(-1, 3)
    # Every row and step has its own draw: no two of the 640 are close.
    gaps = np.abs(flat[:, None, :] - flat[None, :, :]).max(-1)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 1e-4
    # A standard normal (Kolmogorov-Smirnov, a fixed draw: no flakiness).
    assert stats.kstest(first.ravel(), "norm").pvalue > 1e-3
    assert np.abs(first - second).min() > 0  # a new call, new noise
    seeded = eps(seed=3)
    np.testing.assert_array_equal(seeded, eps(seed=3))
    assert np.abs(seeded - first).min() > 0


def test_fit_draws_new_noise_at_every_step():
    # The same batch at every step and a learning rate of 0: the per-batch
    # losses differ only through the posterior noise (on JAX a generator
    # advanced inside the compiled loop would repeat it). A trainable layer
    # before the VRNN: its inputs are then differentiated too.
    x = np.tile(_x((1, 6, 2), seed=1), (16, 1, 1))
    layer = make_layer()
    model = keras.Sequential([keras.Input((6, 2)), keras.layers.Dense(2),
                              layer])
    model.compile(keras.optimizers.SGD(0.0))
    losses = []
    batch_end = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(logs["loss"]))
    model.fit(x, batch_size=4, epochs=1, verbose=0, shuffle=False,
              callbacks=[batch_end])
    # Running means of 4 batches: different unless every batch repeated.
    assert len(losses) == 4 and len(set(np.round(losses, 6))) == 4


def test_plain_rnn_of_the_cell_samples_except_inside_a_jax_loop():
    x = _x((4, 5, 3))
    sampled = keras.layers.RNN(keras_mrnn.VRNNCell(6, latent_dim=2, seed=0))
    mean = keras.layers.RNN(
        keras_mrnn.VRNNCell(6, latent_dim=2, inference_latent="mean"))
    assert tuple(mean(x).shape) == (4, 6)
    if BACKEND == "jax":
        with pytest.raises(ValueError, match="inside a JAX loop"):
            sampled(x)
    else:
        assert not np.allclose(_np(sampled(x)), _np(sampled(x)))


# ---------------------------------------------------------------- metrics
def test_fit_and_evaluate_report_the_closed_form_kl_and_nll():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(24, 8, 2)).astype("float32")
    x_val = rng.normal(size=(8, 8, 2)).astype("float32")
    layer = make_layer()
    model = keras.Sequential([keras.Input((8, 2)), layer])
    randomize(layer, seed=1, scale=0.4)
    cut_latent(layer)  # the metrics no longer depend on the noise
    model.compile(keras.optimizers.SGD(0.0))  # nor on the step

    both = np.concatenate([x, x_val])
    out = {k: _np(v) for k, v in layer.infer(both, seed=0).items()}
    kl = gaussian_kl(out["posterior_loc"], out["posterior_scale"],
                     out["prior_loc"], out["prior_scale"])
    nll = -np.sum(normal_log_pdf(both, out["x_loc"], out["x_scale"]),
                  axis=-1)
    kl, val_kl = kl[:24].mean(), kl[24:].mean()
    nll, val_nll = nll[:24].mean(), nll[24:].mean()
    assert kl > 1e-2 and val_kl > 1e-2
    batch_logs = []
    batch_end = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_logs.append(logs))
    history = model.fit(x, batch_size=8, epochs=2, verbose=0,
                        validation_data=(x_val,),
                        callbacks=[batch_end]).history
    # On JAX the trackers' state is out of reach inside the compiled step
    # (see vrnn._CarriedMean): the per-batch logs say NaN, not a stale value.
    in_step = np.array([logs["vrnn_kl"] for logs in batch_logs])
    assert np.all(np.isnan(in_step) if BACKEND == "jax"
                  else np.isfinite(in_step))
    for prefix, want_kl, want_nll in (("", kl, nll),
                                      ("val_", val_kl, val_nll)):
        for epoch in range(2):
            got_kl = history[f"{prefix}vrnn_kl"][epoch]
            got_nll = history[f"{prefix}vrnn_nll"][epoch]
            np.testing.assert_allclose(got_kl, want_kl, rtol=1e-5)
            np.testing.assert_allclose(got_nll, want_nll, rtol=1e-5)
            np.testing.assert_allclose(
                history[f"{prefix}vrnn_elbo"][epoch],
                -(want_kl + want_nll), rtol=1e-5)
            np.testing.assert_allclose(
                history[f"{prefix}loss"][epoch], want_kl + want_nll,
                rtol=1e-5)
    logs = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["vrnn_kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(logs["vrnn_nll"], nll, rtol=1e-5)
    # The trackers are metrics, not weights: they are neither saved nor
    # among get_weights().
    assert len(model.get_weights()) == len(layer.cell.weights) + 1


# -------------------------------------------------------------- analysis
def test_analysis_methods_shapes_seeds_and_consistency():
    x = _x((4, 7, 3), seed=2)
    layer = make_layer()
    layer.build((None, None, 3))
    randomize(layer, seed=1)
    out = {k: _np(v) for k, v in layer.infer(x, seed=0).items()}
    shapes = {k: v.shape for k, v in out.items()}
    assert shapes["h"] == (4, 7, 5) and shapes["kl"] == (4, 7)
    assert shapes["z"] == shapes["prior_scale"] == (4, 7, 3)
    assert shapes["x_loc"] == shapes["x_scale"] == (4, 7, 3)
    assert all(np.all(np.isfinite(v)) for v in out.values())

    # Reconstructions: the decoder's mean (the same seed: the same z), or
    # draws around it.
    recon = _np(layer.reconstruct(x, seed=0))
    np.testing.assert_allclose(recon, out["x_loc"], rtol=1e-6)
    draw = _np(layer.reconstruct(x, decode="sample", seed=0))
    residuals = (draw - out["x_loc"]) / out["x_scale"]
    assert stats.kstest(residuals.ravel(), "norm").pvalue > 1e-3

    # K = 1 and the same seed: log_likelihood draws the z that infer draws,
    # so it is the NumPy sum of log p(z | h) - log q(z | x, h) - NLL.
    ll = _np(layer.log_likelihood(x, num_samples=1, seed=4))
    same = {k: _np(v) for k, v in layer.infer(x, latent="sample",
                                             seed=4).items()}
    z = same["z"]
    want = np.sum(
        np.sum(normal_log_pdf(z, same["prior_loc"], same["prior_scale"])
               - normal_log_pdf(z, same["posterior_loc"],
                                same["posterior_scale"]), axis=-1)
        - same["nll"], axis=1)
    np.testing.assert_allclose(ll, want, rtol=1e-4, atol=1e-4)
    many = _np(layer.log_likelihood(x, num_samples=8, seed=5))
    assert many.shape == (4,) and np.all(np.isfinite(many))

    samples = _np(layer.sample(6, batch_size=2, seed=7))
    assert samples.shape == (2, 6, 3) and np.all(np.isfinite(samples))
    np.testing.assert_array_equal(
        samples, _np(layer.sample(6, batch_size=2, seed=7)))


# ----------------------------------------------------------------- saving
def test_keras_file_round_trip_predicts_and_samples_the_same(tmp_path):
    x = np.random.default_rng(11).uniform(size=(2, 6, 3)).astype("float32")
    layer = make_layer(likelihood="bernoulli", recurrence="gru",
                       inference_latent="mean", kl_weight=0.25,
                       return_sequences=True)
    model = keras.Sequential([keras.Input((6, 3)), layer])
    randomize(layer, seed=1)
    layer.kl_weight = 0.75
    expected = _np(model.predict(x, verbose=0))
    path = str(tmp_path / "vrnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    new = loaded.layers[0]
    assert new.kl_weight == 0.75
    assert new.get_config() == layer.get_config()
    np.testing.assert_allclose(_np(loaded.predict(x, verbose=0)), expected,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(_np(new.sample(3, seed=5)),
                                  _np(layer.sample(3, seed=5)))


# A file saved on one backend and loaded on another: test_backends.py's
# test_keras_file_loads_on_another_backend (a VRNN beside the Markov LSTMs,
# one process per other backend).


# ---------------------------------------------------------------- masking
def test_masked_steps_are_skipped_in_outputs_and_loss():
    x = _x((3, 8, 2), seed=4)
    mask = np.ones((3, 8), bool)
    mask[0, 5:] = False  # trailing
    mask[1, 2] = False  # middle
    mask[1, 6] = False
    mask[2, :3] = False  # leading
    layer = make_layer(inference_latent="mean", kl_weight=0.3,
                       return_sequences=True)
    layer.build((None, None, 2))
    randomize(layer, seed=1, scale=0.3)
    h = _np(layer(x, mask=mask))
    loss = _np(layer.losses[0])
    terms = []
    for row in range(3):
        valid = x[row:row + 1, mask[row]]
        ref = layer.infer(valid)
        ref_h = _np(ref["h"])[0]
        terms.append(0.3 * _np(ref["kl"])[0] + _np(ref["nll"])[0])
        # A masked step repeats the last valid output (zeros before one).
        index = np.cumsum(mask[row]) - 1
        want = np.where((index >= 0)[:, None], ref_h[np.maximum(index, 0)],
                        0.0)
        np.testing.assert_allclose(h[row], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, np.concatenate(terms).mean(),
                               rtol=1e-5)


def test_go_backwards_with_a_mask_models_the_reversed_valid_steps():
    x = _x((2, 6, 3), seed=5)
    mask = np.ones((2, 6), bool)
    mask[:, 4:] = False
    forward = make_layer(inference_latent="mean")
    backward = make_layer(inference_latent="mean", go_backwards=True)
    forward.build((None, None, 3))
    backward.build((None, None, 3))
    randomize(forward, seed=1)
    backward.set_weights(forward.get_weights())
    reversed_valid = x[:, :4][:, ::-1]
    np.testing.assert_allclose(
        _np(backward(x, mask=mask)), _np(forward(reversed_valid)),
        rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        _np(backward.losses[0]), _np(forward.losses[0]), rtol=1e-5)
    assert tuple(backward.sample(4, seed=0).shape) == (1, 4, 3)


# --------------------------------------------------------------- stateful
def test_stateful_chunks_and_fit_carry_the_states():
    x = _x((4, 8, 3), seed=7)
    full = make_layer(inference_latent="mean", return_sequences=True,
                      return_state=True)
    full.build((None, None, 3))
    randomize(full, seed=1, scale=0.4)
    cut_latent(full)  # training's sampled z then leaves the states alone
    h_full, *states_full = (_np(t) for t in full(x))

    chunked = make_layer(inference_latent="mean", return_sequences=True,
                         stateful=True)
    model = keras.Sequential([keras.Input(batch_shape=(4, 4, 3)), chunked])
    chunked.set_weights(full.get_weights())
    hs = [_np(model(x[:, s:s + 4])) for s in range(0, 8, 4)]
    np.testing.assert_allclose(np.concatenate(hs, 1), h_full,
                               rtol=1e-5, atol=1e-5)

    # fit over the consecutive chunks (learning rate 0) ends in the states
    # of one pass over the whole sequences.
    keras_mrnn.reset_states(model)
    model.compile(keras.optimizers.SGD(0.0))
    chunks = np.concatenate([x[:, s:s + 4] for s in range(0, 8, 4)], 0)
    model.fit(chunks, batch_size=4, shuffle=False, epochs=1, verbose=0)
    for got, want in zip(chunked.states, states_full):
        np.testing.assert_allclose(_np(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's compiled analysis")
def test_jax_analysis_compiles_once_per_shape_and_reads_current_weights():
    layer = keras_mrnn.VRNN(8, latent_dim=2, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 6, 3)).astype("float32")
    layer(x)
    first = keras.ops.convert_to_numpy(layer.infer(x, seed=1)["z"])
    for seed in (2, 3, 1):
        layer.infer(x, seed=seed)
    layer.infer(x[:2], seed=1)                   # A new shape.
    scan = layer.__dict__["_cache"]["scan_sample"]
    assert scan.cache_size() == 2
    # Seeds still repeat, and the generator still advances between calls.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer.infer(x, seed=1)["z"]), first)
    assert not np.array_equal(
        keras.ops.convert_to_numpy(layer.infer(x)["z"]),
        keras.ops.convert_to_numpy(layer.infer(x)["z"]))
    # The compiled function reads the weights as they are now, not as they
    # were when it was traced.
    before = keras.ops.convert_to_numpy(layer.reconstruct(x))
    for weight in layer.weights:
        weight.assign(keras.ops.convert_to_numpy(weight) * 0.5)
    after = keras.ops.convert_to_numpy(layer.reconstruct(x))
    assert not np.allclose(before, after)
    compiled = [f for f in layer.__dict__["_cache"].values()
                if hasattr(f, "cache_size")]
    assert compiled and all(f.cache_size() <= 2 for f in compiled)
    samples = [keras.ops.convert_to_numpy(layer.sample(5, batch_size=2,
                                                       seed=s))
               for s in (7, 7, 8)]
    np.testing.assert_array_equal(samples[0], samples[1])
    assert not np.array_equal(samples[0], samples[2])


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's autograd")
def test_torch_analysis_records_no_gradients_and_leaves_training_alone():
    import torch

    layer = keras_mrnn.VRNN(8, latent_dim=2, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 6, 3)).astype("float32")
    trained = layer(x, training=True)
    assert trained.requires_grad
    # The analysis runs under torch.no_grad(): no autograd record of the
    # loop (time and memory), and what it returns holds no graph.
    outputs = [layer.infer(x, seed=1)["z"], layer.reconstruct(x, seed=1),
               layer.sample(5, batch_size=2, seed=1),
               layer.log_likelihood(x, num_samples=3, seed=1)]
    assert not any(o.requires_grad for o in outputs)
    # And leaves gradients on for what comes after.
    assert torch.is_grad_enabled()
    assert layer(x, training=True).requires_grad
