"""Exact inference in a hidden Markov model, in NumPy (private).

Pure functions over per-step emission log-likelihoods, an initial
distribution and a transition matrix, in the shape of dynamax's
`hidden_markov_model/inference.py`: `hmm_filter`, `hmm_smoother`,
`hmm_posterior_mode` (Viterbi) and `hmm_log_likelihood`. They know nothing
of where the log-likelihoods come from: `HMMSwitch` computes them, and the
layer's regime methods, EM (`_em.py`) and the forecasts call these.

Shapes: `log_likelihoods` `(N, T, K)` (N sequences of T steps, K states),
with `initial` `(K,)` and `transition` `(K, K)` (rows: `P[i, j] = p(s_t = j
| s_{t-1} = i)`); or a stack of R models over the same sequences,
`(R, N, T, K)` with `initial` `(R, K)` and `transition` `(R, K, K)` (EM's
restarts). `mask` `(N, T)` (optional) marks the valid steps: masked steps
are skipped, as the layer's filter skips them, so that padding anywhere
gives the unpadded sequence's results; at a masked step the filtered,
predicted and smoothed probabilities repeat the last valid step's (the
initial distribution before the first) and the Viterbi path holds -1.
"""

from typing import NamedTuple

import numpy as np


class Posterior(NamedTuple):
    """What `hmm_filter` and `hmm_smoother` return (NumPy float64).

    Attributes:
        log_likelihood: `(N,)` (or `(R, N)`), `log p(x_1, ..., x_T)` of each
            sequence, in nats.
        filtered: `(..., T, K)`, `p(s_t | x_1, ..., x_t)`.
        predicted: `(..., T, K)`, `p(s_t | x_1, ..., x_{t-1})`, the prior
            of each step (the initial distribution at the first).
        smoothed: `(..., T, K)`, `p(s_t | x_1, ..., x_T)`; `None` from the
            filter.
        expected_transitions: `(K, K)` (or `(R, K, K)`), the expected
            number of transitions `i -> j`, summed over sequences and
            steps; `None` from the filter.
    """

    log_likelihood: np.ndarray
    filtered: np.ndarray
    predicted: np.ndarray
    smoothed: np.ndarray = None
    expected_transitions: np.ndarray = None


def compress(values, mask):
    """Moves each sequence's valid steps to its front, in order.

    Args:
        values: `(N, T, ...)`.
        mask: `(N, T)` boolean, or `None` (every step valid).

    Returns:
        `(values, lengths)`: the valid steps first (zeros after them), and
        the number of valid steps `(N,)`.
    """
    n, steps = values.shape[:2]
    if mask is None:
        return values, np.full(n, steps)
    order = np.argsort(~mask, axis=1, kind="stable")
    trailing = (1,) * (values.ndim - 2)
    values = np.take_along_axis(values, order.reshape(order.shape + trailing),
                                axis=1)
    lengths = mask.sum(axis=1)
    kept = (np.arange(steps) < lengths[:, None]).reshape((n, steps) + trailing)
    return np.where(kept, values, 0), lengths


def lagged(x, order):
    """`(lags, observed)` of sequences `x` `(N, T, F)`: `lags` `(N, T,
    order * F)`, `[x_{t-1}, ..., x_{t-order}]` (zeros where missing), and
    `observed` `(N, T, order)`, 1 where lag i exists."""
    n, steps, features = x.shape
    lags = np.zeros((n, steps, order * features))
    for i in range(1, order + 1):
        lags[:, i:, (i - 1) * features:i * features] = x[:, :-i]
    observed = (np.arange(steps)[:, None] >= np.arange(1, order + 1)).astype(
        "float64")
    return lags, np.broadcast_to(observed, (n, steps, order))


def expand(values, mask, before):
    """The inverse of `compress` for per-step results: `values` `(N, T,
    ...)` of compressed sequences go back to their steps of `mask`; a
    masked step takes the last valid step's value, `before` before the
    first (as `keras.layers.RNN` repeats its previous output)."""
    if mask is None:
        return values
    n, steps = mask.shape
    rows = np.arange(n)[:, None]
    out = np.empty_like(values)
    out[rows, np.argsort(~mask, axis=1, kind="stable")] = values
    # Each step's source: the last valid step at or before it.
    last = np.maximum.accumulate(np.where(mask, np.arange(steps), -1), axis=1)
    started = (last >= 0).reshape((n, steps) + (1,) * (values.ndim - 2))
    return np.where(started, out[rows, np.maximum(last, 0)], before)


def _is_prefix(mask):
    """Whether each row of `mask` is valid steps followed by masked ones."""
    return mask is None or not np.any(mask[:, 1:] & ~mask[:, :-1])


def _stacked(initial, transition, log_likelihoods):
    """Everything as a stack of R models: `(R, K)`, `(R, K, K)`, `(R, N, T,
    K)`, and whether the input was one model."""
    log_likelihoods = np.asarray(log_likelihoods, "float64")
    single = log_likelihoods.ndim == 3
    if single:
        log_likelihoods = log_likelihoods[None]
    if log_likelihoods.ndim != 4:
        raise ValueError(
            "`log_likelihoods` must be (N, T, K) or (R, N, T, K). Received "
            f"shape {log_likelihoods.shape}.")
    r, _, _, k = log_likelihoods.shape
    initial = np.broadcast_to(np.asarray(initial, "float64"), (r, k))
    transition = np.broadcast_to(np.asarray(transition, "float64"), (r, k, k))
    return initial, transition, log_likelihoods, single


def _forward_backward(initial, transition, log_likelihoods, valid, smooth):
    """The scaled forward (and backward) recursion over a stack of models
    whose valid steps are a prefix of each row of `valid` `(N, T)`."""
    r, n, steps, k = log_likelihoods.shape
    # Laid out (T, R, K, N): each step's slice is contiguous, and sums over
    # the states add rows of N (a NumPy sum over a last axis of 2 or 3 is
    # slow). Invalid (trailing) steps emit 1: they change neither pass.
    log_b = np.where(valid.T[:, None, None, :],
                     np.transpose(log_likelihoods, (2, 0, 3, 1)), 0.0)
    top = log_b.max(axis=2, keepdims=True)
    emission = np.exp(log_b - top)
    alpha = np.empty_like(emission)
    predicted = np.empty_like(emission)
    scale = np.empty((steps, r, 1, n))
    transposed = np.swapaxes(transition, -1, -2)
    prior = np.broadcast_to(initial[:, :, None], (r, k, n))
    for t in range(steps):
        joint = prior * emission[t]
        scale[t] = joint.sum(1, keepdims=True)
        alpha[t] = joint / scale[t]
        predicted[t] = prior
        if t and not valid[:, t].all():
            # Past a row's valid steps everything holds its last value.
            alpha[t] = np.where(valid[:, t], alpha[t], alpha[t - 1])
            predicted[t] = np.where(valid[:, t], prior, predicted[t - 1])
        prior = transposed @ alpha[t]
    log_likelihood = np.sum(
        np.where(valid.T[:, None, :], np.log(scale[:, :, 0]) + top[:, :, 0],
                 0.0), axis=0)

    def batch_major(values):                       # (T, R, K, N) -> (R, N, T, K)
        return np.transpose(values, (1, 3, 0, 2))

    if not smooth:
        return Posterior(log_likelihood, batch_major(alpha),
                         batch_major(predicted))
    # weighted[t] = b_t * beta_t / c_t: xi_t(i, j) = alpha_{t-1}(i) P_ij
    # weighted_t(j), summed over sequences and steps after the loop.
    beta = np.ones((r, k, n))
    gamma = np.empty_like(alpha)
    gamma[-1] = alpha[-1]
    weighted = np.zeros_like(alpha)
    for t in range(steps - 1, 0, -1):
        weighted[t] = emission[t] * beta / scale[t]
        beta = transition @ weighted[t]
        gamma[t - 1] = alpha[t - 1] * beta
    gamma /= gamma.sum(2, keepdims=True)
    # Past a row's valid steps the smoother holds its last value (beta is
    # 1 there up to rounding: made exact).
    for t in range(1, steps):
        if not valid[:, t].all():
            gamma[t] = np.where(valid[:, t], gamma[t], gamma[t - 1])
    weighted *= valid.T[:, None, None, :]
    expected = transition * np.einsum(
        "trin,trjn->rij", alpha[:-1], weighted[1:], optimize=True)
    return Posterior(log_likelihood, batch_major(alpha),
                     batch_major(predicted), batch_major(gamma), expected)


def _infer(initial, transition, log_likelihoods, mask, smooth):
    initial, transition, log_b, single = _stacked(
        initial, transition, log_likelihoods)
    steps = log_b.shape[2]
    mask = None if mask is None else np.asarray(mask, bool)
    # The recursion runs over each row's valid steps moved to its front.
    reordered = not _is_prefix(mask)
    if reordered:
        log_b = np.moveaxis(compress(np.moveaxis(log_b, 0, 2), mask)[0],
                            2, 0)
    valid = (np.ones(log_b.shape[1:3], bool) if mask is None
             else np.arange(steps) < mask.sum(1)[:, None])
    posterior = _forward_backward(initial, transition, log_b, valid, smooth)
    if reordered:
        # (R, N, T, K) with the models last for `expand`, and back.
        posterior = posterior._replace(**{
            name: np.moveaxis(expand(np.moveaxis(value, 0, 2), mask,
                                     initial), 2, 0)
            for name, value in posterior._asdict().items()
            if name in ("filtered", "predicted", "smoothed")
            and value is not None})
    if single:
        posterior = Posterior(*[
            None if value is None else value[0] for value in posterior])
    return posterior


def hmm_filter(initial, transition, log_likelihoods, mask=None):
    """The forward filter: `p(s_t | x_1, ..., x_t)` and `log p(x)`.

    Args:
        initial: `(K,)` (or `(R, K)`), the distribution of the first state.
        transition: `(K, K)` (or `(R, K, K)`), row-stochastic.
        log_likelihoods: `(N, T, K)` (or `(R, N, T, K)`), `log p(x_t | s_t
            = k, x_<t)`.
        mask: Optional boolean `(N, T)`, the valid steps.

    Returns:
        A `Posterior` without `smoothed` and `expected_transitions`.
    """
    return _infer(initial, transition, log_likelihoods, mask, smooth=False)


def hmm_smoother(initial, transition, log_likelihoods, mask=None):
    """Forward-backward: the filter, the smoother `p(s_t | x_1, ..., x_T)`
    and the expected transition counts (the E-step of EM).

    Args: as `hmm_filter`.

    Returns:
        A full `Posterior`.
    """
    return _infer(initial, transition, log_likelihoods, mask, smooth=True)


def hmm_log_likelihood(initial, transition, log_likelihoods, mask=None):
    """`log p(x_1, ..., x_T)` of each sequence, `(N,)` (or `(R, N)`).

    Args: as `hmm_filter`.
    """
    return hmm_filter(initial, transition, log_likelihoods, mask).log_likelihood


def hmm_posterior_mode(initial, transition, log_likelihoods, mask=None):
    """The most likely state paths (Viterbi), in log space.

    Args:
        initial: `(K,)`.
        transition: `(K, K)`.
        log_likelihoods: `(N, T, K)`.
        mask: Optional boolean `(N, T)`.

    Returns:
        NumPy int `(N, T)`, states in `[0, K)`, -1 at masked steps.
    """
    log_b = np.asarray(log_likelihoods, "float64")
    n, steps, k = log_b.shape
    if mask is not None:
        mask = np.asarray(mask, bool)
        log_b, lengths = compress(log_b, mask)
    else:
        lengths = np.full(n, steps)
    valid = np.arange(steps) < lengths[:, None]
    log_transition = np.log(np.maximum(np.asarray(transition, "float64"),
                                       1e-300))
    score = log_b[:, 0] + np.log(np.maximum(np.asarray(initial, "float64"),
                                            1e-300))
    back = np.zeros((n, steps, k), int)
    for t in range(1, steps):
        candidates = score[:, :, None] + log_transition      # (N, K, K)
        back[:, t] = candidates.argmax(1)
        # Past a row's last valid step its scores stay as they were.
        score = np.where(valid[:, t, None],
                         candidates.max(1) + log_b[:, t], score)
    path = np.full((n, steps), -1)
    last = lengths - 1
    state = score.argmax(-1)
    for t in range(steps - 1, -1, -1):
        here = t <= last
        path[here, t] = state[here]
        if t > 0:
            state = np.where(here, back[np.arange(n), t, state], state)
    if mask is None:
        return path
    out = np.full((n, steps), -1)
    order = np.argsort(~mask, axis=1, kind="stable")
    out[np.arange(n)[:, None], order] = path
    return np.where(mask, out, -1)
