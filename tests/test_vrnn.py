"""Tests of the variational RNN against NumPy formulas, Keras's own cells and
invariants (stateful chunks, masking, importance-weighting bounds)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import ops  # noqa: E402
from scipy import stats  # noqa: E402

import keras_mrnn  # noqa: E402
from _helpers import (  # noqa: E402
    normal_log_pdf, randomize, sigmoid, value_and_gradients,
)


def np_(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def softplus(a):
    return np.logaddexp(0.0, a)


def relu(a):
    return np.maximum(a, 0.0)


def gaussian_kl(m1, s1, m0, s0):
    """KL(N(m1, s1^2) || N(m0, s0^2)) summed over the last axis."""
    return np.sum(
        np.log(s0 / s1) + (s1**2 + (m1 - m0) ** 2) / (2.0 * s0**2) - 0.5,
        axis=-1,
    )


def gaussian_nll(x, loc, scale):
    return -np.sum(normal_log_pdf(x, loc, scale), axis=-1)


def bernoulli_nll(x, logits):
    p = sigmoid(logits)
    return -np.sum(x * np.log(p) + (1.0 - x) * np.log(1.0 - p), axis=-1)


def make_layer(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    args = dict(units=5, latent_dim=3, feature_units=4, hidden_units=6,
                seed=seed)
    args.update(kwargs)
    return keras_mrnn.VRNN(**args)


# --------------------------------------------------------- equations, NumPy
@pytest.mark.parametrize("recurrence", ["lstm", "gru"])
def test_step_equations_match_numpy_and_keras_cells(recurrence):
    """A mean-latent pass equals the paper's equations written in NumPy, with
    the recurrence checked against keras.layers.LSTMCell / GRUCell."""
    rng = np.random.RandomState(0)
    x = rng.normal(size=(3, 4, 2)).astype("float32")
    layer = make_layer(recurrence=recurrence, min_scale=0.01)
    layer.build((None, 4, 2))
    randomize(layer, seed=np.random.RandomState(1))
    cell = layer.cell
    w = {v.name: np_(v) for v in cell.weights}
    U, H, L = 5, 6, 3
    G = 4 if recurrence == "lstm" else 3
    out = layer.infer(x, latent="mean")

    # The documented column layout, rewritten as the paper's separate MLPs.
    enc_kernel = np.concatenate(
        [w["input_kernel"][:, :H], w["recurrent_kernel"][:, H:2 * H]], 0)
    enc_bias = w["input_bias"][:H] + w["recurrent_bias"][H:2 * H]
    dec_kernel = np.concatenate(
        [w["latent_kernel"][:, :H], w["recurrent_kernel"][:, 2 * H:3 * H]], 0)
    dec_bias = w["recurrent_bias"][2 * H:3 * H]
    rnn_kernel = np.concatenate(
        [w["input_kernel"][:, H:], w["latent_kernel"][:, H:]], 0)
    rnn_recurrent = w["recurrent_kernel"][:, 3 * H:]
    if recurrence == "lstm":
        ref = keras.layers.LSTMCell(U)
        ref.build((None, rnn_kernel.shape[0]))
        ref.set_weights([rnn_kernel, rnn_recurrent,
                         w["input_bias"][H:] + w["recurrent_bias"][3 * H:]])
    else:
        ref = keras.layers.GRUCell(U, reset_after=True)
        ref.build((None, rnn_kernel.shape[0]))
        ref.set_weights([rnn_kernel, rnn_recurrent, np.stack(
            [w["input_bias"][H:], w["recurrent_bias"][3 * H:]])])
    assert rnn_kernel.shape[1] == G * U

    states = [np.zeros((3, U), "float32") for _ in cell.state_size]
    for t in range(4):
        h = states[0].astype("float64")
        xt = x[:, t].astype("float64")
        prior = relu(h @ w["recurrent_kernel"][:, :H]
                     + w["recurrent_bias"][:H]) @ w["prior_kernel"] \
            + w["prior_bias"]
        m0, s0 = prior[:, :L], softplus(prior[:, L:]) + 0.01
        phi_x = relu(xt @ w["phi_x_kernel"] + w["phi_x_bias"])
        enc = relu(np.concatenate([phi_x, h], 1) @ enc_kernel + enc_bias) \
            @ w["encoder_kernel"] + w["encoder_bias"]
        m1, s1 = enc[:, :L], softplus(enc[:, L:]) + 0.01
        z = m1
        phi_z = relu(z @ w["phi_z_kernel"] + w["phi_z_bias"])
        dec = relu(np.concatenate([phi_z, h], 1) @ dec_kernel + dec_bias) \
            @ w["decoder_kernel"] + w["decoder_bias"]
        x_loc, x_scale = dec[:, :2], softplus(dec[:, 2:]) + 0.01
        _, states = ref(np.concatenate([phi_x, phi_z], 1).astype("float32"),
                        states)
        states = [np_(s).astype("float32") for s in states]

        tol = dict(rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np_(out["prior_loc"][:, t]), m0, **tol)
        np.testing.assert_allclose(np_(out["prior_scale"][:, t]), s0, **tol)
        np.testing.assert_allclose(np_(out["posterior_loc"][:, t]), m1, **tol)
        np.testing.assert_allclose(
            np_(out["posterior_scale"][:, t]), s1, **tol)
        np.testing.assert_allclose(np_(out["z"][:, t]), z, **tol)
        np.testing.assert_allclose(np_(out["x_loc"][:, t]), x_loc, **tol)
        np.testing.assert_allclose(np_(out["x_scale"][:, t]), x_scale, **tol)
        np.testing.assert_allclose(np_(out["h"][:, t]), states[0], **tol)
        np.testing.assert_allclose(
            np_(out["kl"][:, t]), gaussian_kl(m1, s1, m0, s0), **tol)
        np.testing.assert_allclose(
            np_(out["nll"][:, t]), gaussian_nll(xt, x_loc, x_scale), **tol)


def test_kl_and_gaussian_nll_match_closed_forms_with_sampled_z():
    rng = np.random.RandomState(1)
    x = rng.normal(size=(6, 7, 3)).astype("float32")
    layer = make_layer(min_scale=1e-3)
    layer.build((None, None, 3))
    randomize(layer, seed=np.random.RandomState(1), scale=0.8)
    out = {k: np_(v) for k, v in layer.infer(x, latent="sample",
                                            seed=3).items()}
    # z really is sampled, and not the mean.
    assert np.abs(out["z"] - out["posterior_loc"]).mean() > 1e-2
    np.testing.assert_allclose(
        out["kl"],
        gaussian_kl(out["posterior_loc"], out["posterior_scale"],
                    out["prior_loc"], out["prior_scale"]),
        rtol=1e-4, atol=1e-4)
    assert np.all(out["kl"] >= -1e-5)
    np.testing.assert_allclose(
        out["nll"], gaussian_nll(x, out["x_loc"], out["x_scale"]),
        rtol=1e-4, atol=1e-4)
    assert np.all(out["prior_scale"] >= 1e-3)
    assert np.all(out["x_scale"] >= 1e-3)


@pytest.mark.parametrize("binary", [True, False])
def test_bernoulli_nll_matches_numpy(binary):
    rng = np.random.RandomState(2)
    x = rng.random_sample((4, 6, 5)).astype("float32")
    if binary:
        x = (x > 0.5).astype("float32")
    layer = make_layer(likelihood="bernoulli", recurrence="gru")
    layer.build((None, None, 5))
    randomize(layer, seed=np.random.RandomState(1))
    out = layer.infer(x, seed=0)
    assert "x_logits" in out and "x_loc" not in out
    np.testing.assert_allclose(
        np_(out["nll"]), bernoulli_nll(x, np_(out["x_logits"])),
        rtol=1e-4, atol=1e-4)


def test_cell_in_plain_rnn_matches_vrnn_features():
    x = np.random.RandomState(3).normal(size=(2, 5, 3)).astype("float32")
    layer = make_layer(inference_latent="mean", return_sequences=True)
    h = np_(layer(x))
    cell = keras_mrnn.VRNNCell(5, 3, feature_units=4, hidden_units=6,
                               inference_latent="mean")
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rnn.build((None, 5, 3))
    cell.set_weights(layer.cell.get_weights())
    np.testing.assert_allclose(np_(rnn(x)), h, rtol=1e-5, atol=1e-5)
    assert h.shape == (2, 5, 5)


def test_output_shapes_symbolic_and_eager():
    x = np.random.RandomState(13).normal(size=(2, 7, 3)).astype("float32")
    for recurrence, n_states in (("lstm", 2), ("gru", 1)):
        inputs = keras.Input((7, 3))
        outputs = keras_mrnn.VRNN(5, 3, recurrence=recurrence,
                                  return_sequences=True,
                                  return_state=True)(inputs)
        assert len(outputs) == 1 + n_states
        assert tuple(outputs[0].shape) == (None, 7, 5)
        assert all(tuple(s.shape) == (None, 5) for s in outputs[1:])
        model = keras.Model(inputs, keras.layers.Dense(1)(outputs[0]))
        assert model(x).shape == (2, 7, 1)
    last = keras_mrnn.VRNN(5, 3)(x)
    assert last.shape == (2, 5)


def test_latent_sample_is_reparameterized():
    """With kl_weight 0 the loss is the NLL alone, which reaches the encoder
    (both its mean and scale columns) only through the sampled z."""
    x = np.random.RandomState(14).normal(size=(3, 5, 2)).astype("float32")
    layer = make_layer(kl_weight=0.0)
    layer.build((None, None, 2))
    encoder = layer.cell.encoder_kernel

    def loss(training):
        # The loss the layer adds, which `stateless_call` returns on every
        # backend (JAX's gradient runs the call in a stateless scope, where
        # `layer.losses` would hold nothing).
        def run():
            _, _, losses = layer.stateless_call(
                [v.value for v in layer.trainable_variables],
                [v.value for v in layer.non_trainable_variables],
                x, training=training, return_losses=True)
            assert len(losses) == 1
            return losses[0]
        return run

    _, (grad,) = value_and_gradients(loss(True), [encoder])
    assert np.abs(grad[:, :3]).max() > 1e-6
    assert np.abs(grad[:, 3:]).max() > 1e-6
    # In inference with the posterior mean the scale columns get nothing.
    layer.cell.inference_latent = "mean"
    _, (grad,) = value_and_gradients(loss(False), [encoder])
    assert np.abs(grad[:, :3]).max() > 1e-6
    assert np.abs(grad[:, 3:]).max() == 0.0


# ------------------------------------------------------------ loss, masking
def test_added_loss_is_weighted_mean_and_respects_mask():
    rng = np.random.RandomState(4)
    x = rng.normal(size=(3, 8, 2)).astype("float32")
    layer = make_layer(inference_latent="mean", kl_weight=0.3)
    layer.build((None, None, 2))
    randomize(layer, seed=np.random.RandomState(1), scale=0.3)
    out = layer.infer(x)
    kl, nll = np_(out["kl"]), np_(out["nll"])
    layer(x)
    np.testing.assert_allclose(
        np_(layer.losses[0]), np.mean(0.3 * kl + nll), rtol=1e-5)

    # Masking the last 3 steps equals running on the first 5.
    mask = np.ones((3, 8), bool)
    mask[:, 5:] = False
    h_masked = np_(layer(x, mask=mask))
    loss_masked = np_(layer.losses[0])
    h_short = np_(layer(x[:, :5]))
    loss_short = np_(layer.losses[0])
    np.testing.assert_allclose(loss_masked, loss_short, rtol=1e-5)
    np.testing.assert_allclose(h_masked, h_short, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        loss_short, np.mean(0.3 * kl[:, :5] + nll[:, :5]), rtol=1e-5)


def test_go_backwards_models_the_reversed_sequence():
    x = np.random.RandomState(5).normal(size=(2, 6, 3)).astype("float32")
    forward = make_layer(inference_latent="mean", return_sequences=True)
    backward = make_layer(inference_latent="mean", return_sequences=True,
                          go_backwards=True)
    forward.build((None, None, 3))
    backward.build((None, None, 3))
    backward.set_weights(forward.get_weights())
    np.testing.assert_allclose(
        np_(backward(x)), np_(forward(x[:, ::-1])), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np_(backward.losses[0]), np_(forward.losses[0]), rtol=1e-5)
    assert backward.sample(4, seed=0).shape == (1, 4, 3)


# ----------------------------------------------------------------- training
def test_fit_decreases_negative_elbo_and_reports_metrics():
    # 32 sequences in batches of 8 (3 steps and a validation batch per
    # epoch) at Adam(2e-2): the negative ELBO falls by 1.1 to 1.6 nats in 4
    # epochs on the three backends, against the 0.5 asserted.
    rng = np.random.RandomState(6)
    t = np.linspace(0, 3 * np.pi, 16)
    phase = rng.uniform(0, 2 * np.pi, size=(32, 1))
    x = np.stack([np.sin(t + phase), np.cos(t + phase)], -1)
    x = (x + 0.1 * rng.normal(size=x.shape)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 2)),
        keras_mrnn.VRNN(16, latent_dim=2, seed=0, name="vrnn"),
    ])
    model.compile(keras.optimizers.Adam(2e-2))
    history = model.fit(x, epochs=4, batch_size=8, verbose=0,
                        validation_split=0.25).history
    for key in ["loss", "vrnn_kl", "vrnn_nll", "vrnn_elbo", "val_loss",
                "val_vrnn_kl", "val_vrnn_nll", "val_vrnn_elbo"]:
        assert key in history, sorted(history)
    kl, nll = np.array(history["vrnn_kl"]), np.array(history["vrnn_nll"])
    np.testing.assert_allclose(history["vrnn_elbo"], -(kl + nll), rtol=1e-4)
    np.testing.assert_allclose(history["loss"], kl + nll, rtol=1e-4)
    assert np.all(kl >= 0)
    neg_elbo = -np.array(history["val_vrnn_elbo"])
    assert np.all(np.isfinite(neg_elbo))
    assert neg_elbo[-1] < neg_elbo[0] - 0.5, neg_elbo
    assert -history["vrnn_elbo"][-1] < -history["vrnn_elbo"][0] - 0.5
    # Per-step features for later layers.
    assert model.predict(x[:4], verbose=0).shape == (4, 16)


# ------------------------------------------------------------------ stateful
def test_stateful_chunks_equal_one_pass_with_mean_latent():
    rng = np.random.RandomState(7)
    x = rng.normal(size=(4, 12, 3)).astype("float32")
    full = make_layer(inference_latent="mean", return_sequences=True)
    full.build((None, None, 3))
    randomize(full, seed=np.random.RandomState(1), scale=0.4)
    h_full = np_(full(x))
    loss_full = np_(full.losses[0])

    chunked = make_layer(inference_latent="mean", return_sequences=True,
                         stateful=True)
    model = keras.Sequential([keras.Input(batch_shape=(4, 4, 3)), chunked])
    chunked.set_weights(full.get_weights())
    hs, losses = [], []
    for start in range(0, 12, 4):
        hs.append(np_(model(x[:, start:start + 4], training=False)))
        losses.append(np_(chunked.losses[0]))
    np.testing.assert_allclose(np.concatenate(hs, 1), h_full,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.mean(losses), loss_full, rtol=1e-5)

    # Truncated BPTT: fit over consecutive chunks carries the states.
    keras_mrnn.reset_states(model)
    model.compile(keras.optimizers.Adam(1e-3))
    chunks = np.concatenate([x[:, s:s + 4] for s in range(0, 12, 4)], 0)
    history = model.fit(chunks, batch_size=4, shuffle=False, epochs=1,
                        verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert np.abs(np_(chunked.states[0])).sum() > 0
    with pytest.raises(ValueError, match="batch size"):
        model(x[:2, :4])


# -------------------------------------------------------------- evaluation
def test_importance_weighted_bound_is_above_elbo_and_grows():
    rng = np.random.RandomState(8)
    x = rng.normal(size=(16, 8, 2)).astype("float32")
    layer = make_layer(units=8, latent_dim=2, feature_units=8,
                       hidden_units=8)
    layer.build((None, None, 2))
    randomize(layer, seed=np.random.RandomState(1), scale=0.3)
    repeats = 20
    xr = np.repeat(x, repeats, axis=0)
    out = layer.infer(xr, latent="sample", seed=0)
    elbo = -np.sum(np_(out["kl"]) + np_(out["nll"]), axis=1)
    ll1 = np_(layer.log_likelihood(xr, num_samples=1, seed=1))
    # K = 1 is an unbiased ELBO estimate too (sampled instead of closed-form
    # KL): both means agree within a few standard errors.
    se = np.sqrt(elbo.var() / elbo.size + ll1.var() / ll1.size)
    assert abs(ll1.mean() - elbo.mean()) < 5 * se
    # More particles, a tighter bound (means over 20 x 16 estimates for K=1,
    # 16 for K = 10, 100; the gaps are several nats at these weights).
    means = [ll1.mean()] + [
        np_(layer.log_likelihood(x, num_samples=k, seed=2,
                                 batch_size=8)).mean()
        for k in (10, 100)
    ]
    assert means[0] + 1.0 < means[1] < means[2] - 1.0, means
    assert means[2] > elbo.mean() + 3 * se, (means, elbo.mean())
    # batch_size=8 as above: on JAX the same compiled loop serves it.
    per_sequence = np_(layer.log_likelihood(x, num_samples=100, seed=3,
                                            batch_size=8))
    assert per_sequence.shape == (16,)
    assert np.all(per_sequence >= elbo.reshape(16, repeats).mean(1) - 1.0)


def test_sample_shapes_seeds_and_decode_modes():
    layer = make_layer(likelihood="bernoulli")
    layer.build((None, None, 4))
    randomize(layer, seed=np.random.RandomState(1))
    a = np_(layer.sample(7, batch_size=3, seed=11))
    b = np_(layer.sample(7, batch_size=3, seed=11))
    c = np_(layer.sample(7, batch_size=3, seed=12))
    assert a.shape == (3, 7, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) <= {0.0, 1.0}
    mean = np_(layer.sample(7, batch_size=3, seed=11, decode="mean"))
    assert np.all((mean > 0) & (mean < 1))
    recon = np_(layer.reconstruct(a, seed=0))
    assert recon.shape == a.shape and np.all((recon > 0) & (recon < 1))

    gaussian = make_layer()
    gaussian.build((None, None, 2))
    randomize(gaussian, seed=np.random.RandomState(1))
    g = np_(gaussian.sample(5, batch_size=2, seed=0))
    assert g.shape == (2, 5, 2) and np.all(np.isfinite(g))
    # Decoded means along a generated path: the first step's mean is the
    # decoder mean for z_1 drawn from the prior at h_0 = 0, so regenerating
    # with the same seed and decode="mean" reproduces it exactly.
    np.testing.assert_array_equal(
        np_(gaussian.sample(5, batch_size=2, seed=0, decode="mean")),
        np_(gaussian.sample(5, batch_size=2, seed=0, decode="mean")))
    r1 = np_(gaussian.reconstruct(g, decode="sample", seed=4))
    r2 = np_(gaussian.reconstruct(g, decode="sample", seed=4))
    np.testing.assert_array_equal(r1, r2)


def test_samples_follow_the_decoder_along_their_own_path():
    layer = make_layer()
    layer.build((None, None, 2))
    randomize(layer, seed=np.random.RandomState(1))
    # phi_z(z) constant: h then follows x alone, so infer on a generated
    # sequence retraces the path that generated it.
    layer.cell.phi_z_kernel.assign(
        np.zeros(layer.cell.phi_z_kernel.shape, "float32"))
    means = np_(layer.sample(12, batch_size=3, seed=0, decode="mean"))
    assert means.shape == (3, 12, 2)
    np.testing.assert_allclose(
        np_(layer.infer(means)["x_loc"]), means, rtol=1e-5, atol=1e-5)
    draws = np_(layer.sample(100, batch_size=8, seed=1))
    out = {k: np_(v) for k, v in layer.infer(draws).items()}
    residuals = (draws - out["x_loc"]) / out["x_scale"]
    # Standard normal draws around the decoder's mean (Kolmogorov-Smirnov
    # on a fixed draw: no flakiness).
    assert stats.kstest(residuals.ravel(), "norm").pvalue > 1e-3


# ---------------------------------------------------------------- numerics
# 1000 steps where the loop is compiled (TensorFlow's tf.function, JAX's
# scan). PyTorch runs every step as eager ops from Python, tens of ms a step
# forward and backward on a 2-core CPU (3 minutes for this test at 2000
# steps): 200 steps there, the same loop and maths. test_reliability's
# long-sequence test checks outputs and gradients over 5000 steps.
LONG = 200 if keras.backend.backend() == "torch" else 1000


def test_long_sequences_are_finite_in_float32():
    rng = np.random.RandomState(9)
    x = rng.normal(size=(4, LONG, 2)).astype("float32")
    x = (x - x.mean()) / x.std()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((LONG, 2)),
        keras_mrnn.VRNN(8, latent_dim=2, min_scale=1e-4, seed=0),
    ])
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(x, batch_size=4, epochs=1, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert all(np.all(np.isfinite(np_(w))) for w in model.weights)
    bernoulli = make_layer(likelihood="bernoulli")
    binary = (rng.random_sample((2, LONG, 2)) > 0.5).astype("float32")
    out = bernoulli.infer(binary, seed=0)
    assert np.isfinite(np_(out["nll"])).all()
    assert np.isfinite(np_(out["kl"])).all()


def test_mixed_float16_policy_is_finite_with_float32_distributions():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        x = np.random.RandomState(10).random_sample(
            (8, 30, 3)).astype("float32")
        layer = keras_mrnn.VRNN(8, latent_dim=2, likelihood="bernoulli",
                                seed=0)
        model = keras.Sequential([keras.Input((30, 3)), layer])
        model.compile(keras.optimizers.Adam(1e-2))
        history = model.fit(x, batch_size=8, epochs=1, verbose=0).history
        assert np.all(np.isfinite(history["loss"]))
        assert layer.compute_dtype == "float16"
        dtype = keras.backend.standardize_dtype
        assert dtype(model(x).dtype) == "float16"
        out = layer.infer(x)
        assert dtype(out["kl"].dtype) == "float32"
        assert np.all(np.isfinite(np_(out["nll"])))
        assert np.isfinite(np_(layer.sample(10, seed=0))).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ------------------------------------------------------------ serialization
def test_save_and_load_round_trip(tmp_path):
    x = np.random.RandomState(11).random_sample((2, 6, 3)).astype("float32")
    layer = make_layer(likelihood="bernoulli", recurrence="gru",
                       inference_latent="mean", kl_weight=0.25,
                       min_scale=1e-3, return_sequences=True,
                       return_state=True, name="vrnn")
    model = keras.Sequential([keras.Input((6, 3)), layer])
    randomize(layer, seed=np.random.RandomState(1))
    layer.kl_weight = 0.75
    expected = [np_(t) for t in model(x)]
    path = str(tmp_path / "vrnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    new = loaded.layers[0]
    assert isinstance(new, keras_mrnn.VRNN)
    assert isinstance(new.cell, keras_mrnn.VRNNCell)
    assert new.kl_weight == 0.75
    assert new.get_config() == layer.get_config()
    for got, want in zip(loaded(x), expected):
        np.testing.assert_allclose(np_(got), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(
        np_(new.sample(3, seed=5)), np_(layer.sample(3, seed=5)))
    cell = keras_mrnn.VRNNCell.from_config(layer.cell.get_config())
    assert cell.get_config() == layer.cell.get_config()


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(units=0, latent_dim=2), ValueError, "units=0"),
    (dict(units=2.5, latent_dim=2), TypeError, "units=2.5"),
    (dict(units=4, latent_dim=-1), ValueError, "latent_dim=-1"),
    (dict(units=4, latent_dim="2"), TypeError, "latent_dim='2'"),
    (dict(units=4, latent_dim=2, likelihood="poisson"), ValueError,
     "likelihood='poisson'"),
    (dict(units=4, latent_dim=2, recurrence="rnn"), ValueError,
     "recurrence='rnn'"),
    (dict(units=4, latent_dim=2, min_scale=0.0), ValueError, "min_scale=0.0"),
    (dict(units=4, latent_dim=2, min_scale=-1e-3), ValueError, "min_scale"),
    (dict(units=4, latent_dim=2, inference_latent="mode"), ValueError,
     "inference_latent='mode'"),
    (dict(units=4, latent_dim=2, feature_units=0), ValueError,
     "feature_units=0"),
    (dict(units=4, latent_dim=2, seed="a"), TypeError, "seed='a'"),
    (dict(units=4, latent_dim=2, kl_weight=-1.0), ValueError,
     "kl_weight=-1.0"),
])
def test_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        keras_mrnn.VRNN(**kwargs)


def test_bad_inputs_and_method_arguments():
    with pytest.raises(ValueError, match="3-D input"):
        keras_mrnn.VRNN(4, 2)(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="likelihood='gamma'"):
        keras_mrnn.VRNNCell(4, 2, likelihood="gamma")
    layer = keras_mrnn.VRNN(4, 2)
    with pytest.raises(ValueError, match="built"):
        layer.sample(3)
    layer.build((None, None, 3))
    with pytest.raises(ValueError, match="num_steps=0"):
        layer.sample(0)
    with pytest.raises(ValueError, match="decode='mode'"):
        layer.sample(3, decode="mode")
    with pytest.raises(ValueError, match="num_samples=0"):
        layer.log_likelihood(np.zeros((1, 2, 3), "float32"), num_samples=0)
    with pytest.raises(ValueError, match="3 features"):
        layer.infer(np.zeros((1, 2, 4), "float32"))
    with pytest.raises(ValueError, match="kl_weight"):
        layer.kl_weight = -0.5


def test_unit_forget_bias_sets_the_forget_block_as_keras_lstm_cell_does():
    init = keras.initializers.Constant(0.3)
    layer = make_layer(recurrence="lstm", bias_initializer=init)
    layer.build((None, 4, 2))
    reference = keras.layers.LSTMCell(5, bias_initializer=init)
    reference.build((None, 2))
    hidden = 6  # input_bias: [encoder hidden (6) | LSTM gates i, f, c, o]
    np.testing.assert_allclose(
        np_(layer.cell.input_bias)[hidden:], np_(reference.bias))
    off = make_layer(recurrence="lstm", bias_initializer=init,
                     unit_forget_bias=False)
    off.build((None, 4, 2))
    np.testing.assert_allclose(np_(off.cell.input_bias), 0.3)


# ------------------------------------------- masked steps in log_likelihood
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
@pytest.mark.parametrize("masked", ["leading", "middle"])
def test_log_likelihood_with_masked_steps_matches_numpy(
        zero_output_for_mask, masked):
    # Leading masked steps (left padding), and any masked step with
    # zero_output_for_mask=True, carry zeros in the packed output: a prior
    # scale of 0 there made the estimate NaN (issue 11, bug 1).
    rng = np.random.RandomState(12)
    x = rng.normal(size=(4, 7, 2)).astype("float32")
    mask = np.ones((4, 7), bool)
    if masked == "leading":
        mask[:, :3] = False
        mask[0, :] = True  # rows with different amounts of padding
        mask[1, :5] = False
    else:
        mask[:, 2] = False
        mask[1, 4:6] = False
    layer = make_layer(min_scale=1e-3,
                       zero_output_for_mask=zero_output_for_mask)
    layer.build((None, None, 2))
    randomize(layer, seed=np.random.RandomState(1), scale=0.5)
    # K = 1 and the same seed: log_likelihood draws the z that infer draws,
    # so the estimate is the NumPy sum over valid steps of
    # log p(z | h) - log q(z | x, h) - NLL at those z.
    got = np_(layer.log_likelihood(x, num_samples=1, seed=4, mask=mask))
    out = {k: np_(v) for k, v in
           layer.infer(x, latent="sample", seed=4, mask=mask).items()}
    v = mask[..., None]
    z = out["z"]
    log_prior = normal_log_pdf(
        z, out["prior_loc"], np.where(v, out["prior_scale"], 1.0))
    log_post = normal_log_pdf(
        z, out["posterior_loc"], np.where(v, out["posterior_scale"], 1.0))
    per_step = np.sum(log_prior - log_post, axis=-1) - out["nll"]
    want = np.sum(np.where(mask, per_step, 0.0), axis=1)
    assert np.all(np.isfinite(got)), got
    # float32 sums of ~20 terms of a few nats each: 1e-4 relative is ~100
    # float32 ulps, and covers a GPU's differently ordered sums.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_log_likelihood_of_left_padded_sequences_equals_unpadded(
        zero_output_for_mask):
    rng = np.random.RandomState(13)
    x = rng.normal(size=(3, 5, 2)).astype("float32")
    padded = np.concatenate([np.zeros((3, 3, 2), "float32"), x], axis=1)
    mask = np.ones((3, 8), bool)
    mask[:, :3] = False
    layer = make_layer(min_scale=1e-3, inference_latent="mean",
                       zero_output_for_mask=zero_output_for_mask)
    layer.build((None, None, 2))
    randomize(layer, seed=np.random.RandomState(1), scale=0.5)
    # Padding shifts the latent draws by the padded steps, so the estimate
    # is made independent of z for an exact comparison: phi_z(z) constant
    # (z reaches neither h nor the decoder) and the prior equal to the
    # posterior (log p(z) - log q(z) = 0). It is then -sum_t NLL_t.
    cell = layer.cell
    cell.phi_z_kernel.assign(np.zeros(cell.phi_z_kernel.shape, "float32"))
    for kernel in (cell.prior_kernel, cell.encoder_kernel):
        kernel.assign(np.zeros(kernel.shape, "float32"))
    cell.encoder_bias.assign(cell.prior_bias)
    want = np_(layer.log_likelihood(x, num_samples=4, seed=5))
    np.testing.assert_allclose(
        want, -np.sum(np_(layer.infer(x)["nll"]), axis=1), rtol=1e-5)
    got = np_(layer.log_likelihood(padded, num_samples=4, seed=5, mask=mask))
    # Same float32 operations on the valid steps, from the same zero
    # states: equal within a few ulps of sums of a few nats.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    # The training loss (deterministic here: inference_latent="mean") is
    # the same with a Masking layer in front of left-padded input.
    inputs = keras.Input((None, 2))
    model = keras.Model(inputs, layer(keras.layers.Masking(0.0)(inputs)))
    model(x)
    loss = np_(model.losses[0])
    model(padded)
    np.testing.assert_allclose(np_(model.losses[0]), loss, rtol=1e-5)
    assert np.isfinite(loss)


# ------------------------------------------- mixed precision: float32 target
def test_mixed_float16_nll_is_computed_against_the_float32_input():
    # Under mixed_float16 the likelihood target x was rounded to float16
    # before the NLL (issue 11, bug 4). Neither 0.1234567 nor 0.124321 is a
    # float16: they round to 0.12347412 and 0.12432861 (errors 1.7e-5,
    # 7e-6).
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = np.full((2, 4, 3), 0.1234567, "float32")
        x[1] = 0.124321
        layer = make_layer(kl_weight=0.0, min_scale=1e-4)
        model = keras.Sequential([keras.Input((4, 3)), layer])
        assert layer.compute_dtype == "float16"
        cell = layer.cell
        # Decoder = its bias: mean 0.125, scale softplus(-20) + 1e-4 ~ 1e-4,
        # so that the NLL is steep in x: dNLL/dx = (x - mu) / sigma^2 ~ 1e5.
        cell.decoder_kernel.assign(np.zeros(cell.decoder_kernel.shape))
        cell.decoder_bias.assign(np.array([0.125] * 3 + [-20.0] * 3))
        out = layer.infer(x)
        loc, scale = np_(out["x_loc"]), np_(out["x_scale"])
        want = gaussian_nll(x.astype("float64"), loc, scale)
        at_float16 = gaussian_nll(
            x.astype("float16").astype("float64"), loc, scale)
        # float32 bound: TFP computes (x / sigma - mu / sigma)^2, which
        # cancels: x / sigma ~ 1250 has an ulp of 1.2e-4, so each feature's
        # NLL is within |z| * 2 ulps = 15 * 2.4e-4 = 4e-3 nats, 1.1e-2 per
        # step (measured 2e-3). atol 0.05 allows that (and a GPU's
        # ~1e-4 relative on 330 nats) and is 30x below the effect of
        # rounding x to float16 (1.5 and 8 nats per step), checked first.
        atol = 0.05
        assert np.all(np.abs(at_float16 - want) > 30 * atol)
        np.testing.assert_allclose(np_(out["nll"]), want, rtol=0, atol=atol)
        # The training loss (kl_weight 0: the mean NLL) takes the other
        # path: the layer call, whose inputs Keras autocasts.
        model(x)
        np.testing.assert_allclose(
            np_(layer.losses[0]), np.mean(want), rtol=0, atol=atol)
    finally:
        keras.mixed_precision.set_global_policy("float32")
