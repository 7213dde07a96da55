"""Tests of the HMM inference functions (`keras_mrnn._inference`): the
filter, smoother, Viterbi and log-likelihood over given emissions, an
initial distribution and a transition matrix, with no layer in between.

What they are checked against, with a non-uniform initial distribution:

- a log-space forward-backward, expected transition counts and Viterbi
  written out in NumPy (`tests/_helpers.py`), one sequence at a time;
- `tfp.distributions.HiddenMarkovModel` with Gaussian emissions (its
  `log_prob`, `posterior_marginals`, `posterior_mode`);
- the same sequences unpadded (masks anywhere), and a stack of models run
  one by one.

Everything is float64 NumPy on both sides (the functions scale, the
references work in log space): 1e-9 covers their different rounding over
the 20 steps here; Viterbi paths compare exactly (random emissions: the
best paths are far apart).
"""

import numpy as np
import pytest

from _helpers import numpy_forward_backward, numpy_viterbi
from keras_mrnn import _inference

TOL = dict(rtol=1e-9, atol=1e-9)
N, T, K = 4, 20, 3


def random_model(seed, k=K):
    rng = np.random.default_rng(seed)
    initial = rng.dirichlet(np.ones(k))               # Not uniform.
    transition = rng.dirichlet(np.ones(k), size=k) + 2.0 * np.eye(k)
    transition /= transition.sum(1, keepdims=True)
    return initial, transition


def random_log_b(seed, shape=(N, T, K)):
    return np.random.default_rng(seed).normal(size=shape) * 2.0


def test_against_numpy_log_space_references():
    initial, transition = random_model(0)
    log_b = random_log_b(1)
    smoother = _inference.hmm_smoother(initial, transition, log_b)
    filtered = _inference.hmm_filter(initial, transition, log_b)
    refs = [numpy_forward_backward(initial, transition, row) for row in log_b]
    for name in ("filtered", "predicted", "smoothed"):
        want = np.stack([r[name] for r in refs])
        assert getattr(smoother, name).shape == (N, T, K)
        np.testing.assert_allclose(getattr(smoother, name), want, **TOL)
    for name in ("filtered", "predicted"):
        np.testing.assert_allclose(getattr(filtered, name),
                                   getattr(smoother, name), **TOL)
    assert filtered.smoothed is None and filtered.expected_transitions is None
    want_ll = np.array([r["log_likelihood"] for r in refs])
    np.testing.assert_allclose(smoother.log_likelihood, want_ll, **TOL)
    np.testing.assert_allclose(
        _inference.hmm_log_likelihood(initial, transition, log_b), want_ll,
        **TOL)
    np.testing.assert_allclose(
        smoother.expected_transitions,
        sum(r["expected_transitions"] for r in refs), **TOL)
    # The predicted probabilities start at the initial distribution.
    np.testing.assert_allclose(smoother.predicted[:, 0],
                               np.broadcast_to(initial, (N, K)), **TOL)
    path = _inference.hmm_posterior_mode(initial, transition, log_b)
    np.testing.assert_array_equal(
        path, np.stack([numpy_viterbi(initial, transition, r) for r in log_b]))


def test_against_tfp_hidden_markov_model():
    tfp = pytest.importorskip("tensorflow_probability")
    pytest.importorskip("tensorflow")
    tfd = tfp.distributions
    initial, transition = random_model(2)
    rng = np.random.default_rng(3)
    loc, scale = np.array([-1.0, 0.5, 2.0]), np.array([0.7, 1.0, 0.5])
    x = rng.normal(size=(N, T)) * 1.5
    log_b = (-0.5 * ((x[..., None] - loc) / scale) ** 2 - np.log(scale)
             - 0.5 * np.log(2 * np.pi))
    hmm = tfd.HiddenMarkovModel(
        initial_distribution=tfd.Categorical(probs=initial),
        transition_distribution=tfd.Categorical(probs=transition),
        observation_distribution=tfd.Normal(loc=loc, scale=scale),
        num_steps=T)
    posterior = _inference.hmm_smoother(initial, transition, log_b)
    np.testing.assert_allclose(posterior.log_likelihood,
                               hmm.log_prob(x).numpy(), rtol=1e-7)
    np.testing.assert_allclose(
        posterior.smoothed, hmm.posterior_marginals(x).probs_parameter(),
        atol=1e-7)
    np.testing.assert_array_equal(
        _inference.hmm_posterior_mode(initial, transition, log_b),
        hmm.posterior_mode(x).numpy())


def test_a_stack_of_models_is_each_model_alone():
    models = [random_model(seed) for seed in (4, 5)]
    initial = np.stack([m[0] for m in models])
    transition = np.stack([m[1] for m in models])
    log_b = np.stack([random_log_b(6), random_log_b(7)])
    stacked = _inference.hmm_smoother(initial, transition, log_b)
    assert stacked.smoothed.shape == (2, N, T, K)
    assert stacked.expected_transitions.shape == (2, K, K)
    for r in range(2):
        alone = _inference.hmm_smoother(initial[r], transition[r], log_b[r])
        for got, want in zip(stacked, alone):
            np.testing.assert_allclose(got[r], want, **TOL)


def masks():
    right = np.arange(T) < np.array([20, 14, 9, 1])[:, None]
    holes = np.zeros((N, T), bool)
    for row, n in enumerate([20, 11, 6, 3]):
        holes[row, np.sort(np.random.default_rng(row).choice(
            T, n, replace=False))] = True
    return {"right": right, "left": right[:, ::-1], "holes": holes}


@pytest.mark.parametrize("kind", ["right", "left", "holes"])
def test_masked_steps_are_skipped(kind):
    mask = masks()[kind]
    initial, transition = random_model(8)
    log_b = random_log_b(9)
    # Garbage at the masked steps: the functions may not read it.
    garbage = np.where(mask[..., None], log_b, np.nan)
    posterior = _inference.hmm_smoother(initial, transition, garbage, mask)
    path = _inference.hmm_posterior_mode(initial, transition, garbage, mask)
    expected = 0.0
    for row in range(N):
        valid = mask[row]
        alone = _inference.hmm_smoother(initial, transition,
                                        log_b[row, valid][None])
        for name in ("filtered", "predicted", "smoothed"):
            value = getattr(posterior, name)[row]
            np.testing.assert_allclose(value[valid],
                                       getattr(alone, name)[0], **TOL)
            # Masked steps repeat the last valid step (the initial
            # distribution before the first).
            previous = initial
            for t in range(T):
                if not valid[t]:
                    np.testing.assert_array_equal(value[t], previous)
                previous = value[t]
        np.testing.assert_allclose(posterior.log_likelihood[row],
                                   alone.log_likelihood[0], **TOL)
        expected = expected + alone.expected_transitions
        np.testing.assert_array_equal(
            path[row, valid],
            _inference.hmm_posterior_mode(initial, transition,
                                          log_b[row, valid][None])[0])
        assert np.all(path[row, ~valid] == -1)
    np.testing.assert_allclose(posterior.expected_transitions, expected,
                               **TOL)


def test_a_fully_masked_sequence_has_log_likelihood_zero():
    initial, transition = random_model(10)
    mask = np.ones((2, 5), bool)
    mask[1] = False
    posterior = _inference.hmm_smoother(initial, transition,
                                        random_log_b(11, (2, 5, K)), mask)
    assert posterior.log_likelihood[1] == 0.0
    np.testing.assert_allclose(posterior.filtered[1],
                               np.broadcast_to(initial, (5, K)))
    assert np.all(_inference.hmm_posterior_mode(
        initial, transition, random_log_b(11, (2, 5, K)), mask)[1] == -1)
