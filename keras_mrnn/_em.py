"""Fitting the hmm switch by EM, in NumPy (private).

`fit(switch, x, mask, restarts, max_iter, seed)` is what `MarkovLSTM.adapt`
runs: Baum-Welch for the `HMMSwitch` model, from several starts at once
(restarts are stacked as a batch of models), keeping the best
log-likelihood. It knows the model through the switch alone: its
emissions at given natural parameters (`sequence_log_likelihoods`, the
function the layer's filter uses, here in float64 for whole sequences; in
float32 on JAX without `jax_enable_x64`), its first parameters
(`initial_parameters`) and its constants; the weights stay the switch's.

- E-step: `_inference.hmm_smoother` over the emissions.
- M-step: the levels and AR coefficients are one weighted least-squares
  problem, `x_t = c_k + A_k' lags_t + e_t` (`c_k = (I - sum_i A_{k,i}')
  mu_k`), its normal equations written with Kronecker blocks so that one
  solver serves every configuration (shared or switching AR, diagonal or
  full covariance); with a shared AR and switching scales it is the
  generalized least-squares step of ECM, given the current covariances.
  Then the covariances from the weighted residuals, and the transition
  matrix from the expected transitions.
- The steps whose lags are not all observed (the first `order` of each
  sequence) enter the E-step as the layer scores them, but not the
  regression.

Masked steps are skipped, as by the layer's filter: each sequence's valid
steps are moved to its front, keeping their order.
"""

import numpy as np

from keras_mrnn import _inference

# A pseudo-count for transitions never seen, a ridge that keeps empty
# states solvable.
_PSEUDO_COUNT = 1e-6
_RIDGE = 1e-8
# Every start runs this many iterations; then the best ones run on.
_SCREENING = 10
_SCREENING_SEQUENCES = 200
_FINALISTS = 3


def _regress(x, lags, gamma, precision, switching_ar):
    """The weighted least-squares M-step for the levels and AR terms.

    Solves `max sum_{m,k} gamma_mk log N(x_m; c_k + A_k' l_m, P_k^{-1})`
    over `c` `(K, F)` and `A` `(K or 1, Q, F)`, given the precisions `P`
    `(K, F, F)`.
    """
    k, features = gamma.shape[1], x.shape[1]
    q = lags.shape[1]
    counts = gamma.sum(0)                                   # (K,)
    sum_x = gamma.T @ x                                     # (K, F)
    if q == 0:
        return sum_x / (counts[:, None] + _RIDGE), np.zeros((1, 0, features))
    sum_l = gamma.T @ lags                                  # (K, Q)
    # Matmuls, per state: NumPy's einsum over 3 operands is far slower.
    weighted = [lags * gamma[:, state, None] for state in range(k)]
    gram = np.stack([w.T @ lags for w in weighted])         # (K, Q, Q)
    cross = np.stack([w.T @ x for w in weighted])           # (K, Q, F)
    k_ar = k if switching_ar else 1
    size_c, size_a = k * features, features * q
    size = size_c + k_ar * size_a
    normal = np.zeros((size, size))
    rhs = np.zeros(size)
    for state in range(k):
        p = precision[state]
        c_slice = slice(state * features, (state + 1) * features)
        a0 = size_c + (state if switching_ar else 0) * size_a
        a_slice = slice(a0, a0 + size_a)
        normal[c_slice, c_slice] += counts[state] * p
        block = np.kron(p, sum_l[state][None, :])           # (F, F Q)
        normal[c_slice, a_slice] += block
        normal[a_slice, c_slice] += block.T
        normal[a_slice, a_slice] += np.kron(p, gram[state])
        rhs[c_slice] += p @ sum_x[state]
        rhs[a_slice] += (p @ cross[state].T).reshape(-1)
    normal += _RIDGE * max(np.trace(normal) / size, 1.0) * np.eye(size)
    theta = np.linalg.solve(normal, rhs)
    c = theta[:size_c].reshape(k, features)
    a = theta[size_c:].reshape(k_ar, features, q).transpose(0, 2, 1)
    return c, a


def _covariances(x, lags, gamma, c, a, switching_scale, diagonal, floor):
    """The covariances from the weighted residuals: `(K or 1, F, F)`."""
    mean = c[None] + np.stack([lags @ a_k for a_k in a], 1)  # (M, K, F)
    residual = x[:, None, :] - mean
    outer = np.stack([
        (residual[:, k] * gamma[:, k, None]).T @ residual[:, k]
        for k in range(residual.shape[1])])
    counts = gamma.sum(0)
    if not switching_scale:
        outer, counts = outer.sum(0, keepdims=True), counts.sum(keepdims=True)
    cov = outer / (counts[:, None, None] + _RIDGE)
    features = x.shape[1]
    if diagonal:
        cov = cov * np.eye(features)
    return cov + floor * np.eye(features)


class _Model:
    """The M-step of one switch's model, and its natural parameters."""

    def __init__(self, switch):
        self.switch = switch
        self.features = switch.input_dim
        self.k = switch.num_states
        self.diagonal = switch.covariance == "diagonal"
        # The variance at the switch's scale floor.
        self.variance_floor = np.exp(2.0 * switch.LOG_SCALE_FLOOR)

    def m_step(self, x, lags, gamma, cov):
        """New `(level, ar, cov)` from the regression rows, given the
        current covariances `cov` `(K or 1, F, F)`."""
        switch, features = self.switch, self.features
        order = switch.order
        precision = np.broadcast_to(
            np.linalg.inv(cov), (self.k, features, features))
        if self.diagonal:
            # Each feature on its own lags, with its own variances.
            c = np.zeros((self.k, features))
            a = np.zeros((self.k if switch.switching_ar else 1,
                          order * features, features))
            for f in range(features):
                c_f, a_f = _regress(
                    x[:, f:f + 1], lags[:, f::features], gamma,
                    precision[:, f:f + 1, f:f + 1], switch.switching_ar)
                c[:, f] = c_f[:, 0]
                if order:
                    a_f = np.clip(a_f[:, :, 0], -switch.AR_LIMIT,
                                  switch.AR_LIMIT)
                    a[:, f::features, f] = a_f
        else:
            c, a = _regress(x, lags, gamma, precision, switch.switching_ar)
        cov = _covariances(x, lags, gamma, c, a, switch.switching_scale,
                           self.diagonal, self.variance_floor)
        # c_k = (I - sum_i A_{k,i}') mu_k.
        total = np.zeros((a.shape[0], features, features))
        for i in range(order):
            total += a[:, i * features:(i + 1) * features, :]
        denominator = np.eye(features) - np.swapaxes(total, -1, -2)
        if self.diagonal:
            d = np.diagonal(denominator, axis1=-2, axis2=-1)
            d = np.where(np.abs(d) < 1e-2, np.copysign(1e-2, d), d)
            level = c / d
        else:
            level = np.linalg.solve(
                np.broadcast_to(denominator, (self.k, features, features)),
                c[..., None])[..., 0]
        return level, a, cov

    def natural(self, level, a, cov, transition):
        """The arguments of `HMMSwitch.set_parameters`."""
        order, features = self.switch.order, self.features
        ar = None
        if order and self.diagonal:
            ar = np.stack([
                np.concatenate([a[j, i * features:(i + 1) * features, :]
                                .diagonal() for i in range(order)])
                for j in range(a.shape[0])])
        elif order:
            ar = a
        if self.diagonal:
            scale = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
        else:
            scale = np.linalg.cholesky(cov)
        return dict(level=level, ar=ar, scale=scale, transition=transition)

    def log_likelihoods(self, level, a, cov, transition, x):
        """The switch's emissions `(N, T, K)` at these parameters."""
        return self.switch.sequence_log_likelihoods(
            x, self.natural(level, a, cov, transition))


def _initial_assignments(x, valid, num_states, restarts, rng):
    """One hard assignment of the valid steps per start `(R, N, T)`: the
    quantiles of the first principal component, then alternately k-means++
    clusterings and random persistent segmentations."""
    points = x[valid]
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20000)],
                             full_matrices=False)
    projection = x @ vt[0]
    if np.corrcoef(projection[valid], points[:, 0])[0, 1] < 0:
        projection = -projection    # State 0 the lowest level.
    edges = np.quantile(projection[valid],
                        np.arange(1, num_states) / num_states)
    starts = [np.searchsorted(edges, projection)]
    n, steps = valid.shape
    for r in range(1, restarts):
        if r % 2:
            starts.append(_kmeans(x, points, num_states, rng))
        else:
            stay = rng.random((n, steps)) < 0.95
            jumps = rng.integers(1, max(num_states, 2), (n, steps))
            path = np.empty((n, steps), int)
            path[:, 0] = rng.integers(0, num_states, n)
            for t in range(1, steps):
                path[:, t] = np.where(
                    stay[:, t], path[:, t - 1],
                    (path[:, t - 1] + jumps[:, t]) % num_states)
            starts.append(path)
    return np.stack(starts)


def _kmeans(x, points, num_states, rng, iterations=10):
    sample = points[rng.choice(len(points), min(len(points), 5000),
                               replace=False)]
    centres = [sample[rng.integers(len(sample))]]
    for _ in range(1, num_states):
        distance = np.min([((sample - c) ** 2).sum(-1) for c in centres], 0)
        weights = distance / distance.sum() if distance.sum() > 0 else None
        centres.append(sample[rng.choice(len(sample), p=weights)])
    centres = np.array(centres)
    for _ in range(iterations):
        label = np.argmin(((sample[:, None] - centres) ** 2).sum(-1), 1)
        for k in range(num_states):
            if np.any(label == k):
                centres[k] = sample[label == k].mean(0)
    return np.argmin(((x[..., None, :] - centres) ** 2).sum(-1), -1)


class _Data:
    """Compressed sequences, their lags and the regression's rows."""

    def __init__(self, x, valid, order):
        self.x, self.valid, self.order = x, valid, order
        self.lags = _inference.lagged(x, order)[0]
        # The regression's rows: valid steps with all their lags.
        rows = valid & (np.arange(x.shape[1]) >= order)
        self.rows = rows
        self.x_rows, self.lag_rows = x[rows], self.lags[rows]
        self.steps = max(int(valid.sum()), 1)

    def subset(self, index):
        return _Data(self.x[index], self.valid[index], self.order)


def _em(model, data, initial, states, iterations, tolerance):
    """Runs EM on each of `states` (a list of `[level, a, cov,
    transition]`, updated in place) for at most `iterations`, a state
    stopping once its log-likelihood per step improves by less than
    `tolerance`. Returns the log-likelihood of each state's parameters
    (`-inf` for a start that failed)."""
    best = np.full(len(states), -np.inf)
    done = np.zeros(len(states), bool)
    # The M-step is not exactly monotone (clipped AR coefficients, the
    # first `order` steps left out of the regression, ECM): a start whose
    # likelihood falls goes back to its previous parameters and stops.
    previous = list(states)
    # The last pass only scores the states: `best` is theirs.
    for iteration in range(iterations + 1):
        active = np.flatnonzero(~done)
        if not active.size:
            break
        log_lik = np.stack([
            model.log_likelihoods(*states[r], data.x) for r in active])
        transition = np.stack([states[r][3] for r in active])
        posterior = _inference.hmm_smoother(
            initial, transition, log_lik, data.valid)
        gamma, xi = posterior.smoothed, posterior.expected_transitions
        log_likelihood = posterior.log_likelihood
        for i, r in enumerate(active):
            value = log_likelihood[i].sum()
            if not np.isfinite(value) or value < best[r]:
                states[r], done[r] = previous[r], True
                continue
            if value - best[r] < tolerance * data.steps:
                done[r] = True
            best[r] = value
            if done[r] or iteration == iterations:
                continue
            previous[r] = states[r]
            counts = xi[i] + _PSEUDO_COUNT
            level, a, cov = model.m_step(
                data.x_rows, data.lag_rows, gamma[i][data.rows], states[r][2])
            states[r] = [level, a, cov, counts / counts.sum(-1, keepdims=True)]
    return best


def fit(switch, x, mask, restarts, max_iter, seed, tolerance=1e-8):
    """Fits `switch` (a built `HMMSwitch`) to `x` by EM.

    Every start first runs `_SCREENING` iterations (on at most
    `_SCREENING_SEQUENCES` of the sequences, drawn at random); the
    `_FINALISTS` best then run on all of them until they converge or reach
    `max_iter` iterations in all.

    Args:
        x: `(N, T, F)` float64, finite on the valid steps.
        mask: `(N, T)` boolean or `None`.
        restarts: Number of starts.
        max_iter: EM iterations per start.
        seed: Seed of the random starts.
        tolerance: A start stops when its log-likelihood per valid step
            improves by less.

    Returns:
        `(parameters, log_likelihood, log_likelihoods)`: the best start's
        arguments of `HMMSwitch.set_parameters`, its log-likelihood in nats
        (the sum over sequences and valid steps), and the finalists'.
    """
    k, features = switch.num_states, switch.input_dim
    x, lengths = _inference.compress(x, mask)
    n, steps, _ = x.shape
    valid = np.arange(steps) < lengths[:, None]
    data = _Data(x, valid, switch.order)
    model = _Model(switch)
    rng = np.random.default_rng(seed)
    start = _initial_assignments(x, valid, k, restarts, rng)
    first_parameters = switch.initial_parameters()
    default_transition = first_parameters["transition"]
    initial = first_parameters["initial"]
    screening = data
    if n > _SCREENING_SEQUENCES:
        index = np.sort(rng.choice(n, _SCREENING_SEQUENCES, replace=False))
        screening, start = data.subset(index), start[:, index]
    states = []
    for r in range(restarts):
        gamma = np.eye(k)[start[r]][screening.rows]
        cov = np.broadcast_to(np.eye(features), (1, features, features))
        level, a, cov = model.m_step(
            screening.x_rows, screening.lag_rows, gamma, cov)
        states.append([level, a, cov, default_transition.copy()])
    first = min(max_iter, _SCREENING)
    scores = _em(model, screening, initial, states, first, tolerance)
    finalists = [states[r] for r in np.argsort(-scores)[:_FINALISTS]]
    scores = _em(model, data, initial, finalists, max_iter - first,
                 tolerance)
    winner = int(np.argmax(scores))
    return model.natural(*finalists[winner]), float(scores[winner]), scores
