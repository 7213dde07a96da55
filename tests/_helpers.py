"""Helpers shared by the test files: paths, running Python in a new
process, tensors and gradients on any backend, the NumPy maths the tests
compare the layers with, and small layers and stateful models.

A plain module, imported as `_helpers` (pytest puts tests/ on the path, as
the folder of conftest.py); conftest.py keeps the fixtures.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_mrnn
from keras_mrnn import stateful

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
MNIST_NPZ = os.path.normpath(
    os.path.join(ROOT, "..", "shared", "data", "mnist.npz")
)
# Trains on one device and under MirroredStrategy over 2 logical CPUs.
MIRRORED_TRAINING = os.path.join(TESTS, "_mirrored_training.py")


# ------------------------------------------------------ a new process
def run_python(*args, timeout=600, env=None, check=True):
    """Runs `python *args` from the repository root in a new process.

    For what must be set before TensorFlow starts (logical devices) and for
    the scripts of the repository. TensorFlow's C++ logging is quiet;
    `env` adds variables to the environment (or removes those set to
    None). With `check`, fails the test with the end of the process's
    output unless it exits with 0. Returns the `CompletedProcess`.
    """
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environment,
        capture_output=True, text=True, timeout=timeout,
    )
    if check:
        assert result.returncode == 0, (
            f"python {' '.join(args)[:300]} failed:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def last_json_line(stdout):
    """The JSON object a script printed on its last line."""
    return json.loads(stdout.strip().splitlines()[-1])


# --------------------------------------------------- on any backend
BACKEND = keras.backend.backend()


# Tests that start another Python process with a backend (pyproject.toml's
# `slow` marker): left out of the suite's command, run by `-m slow`.
slow = pytest.mark.slow


def tensorflow_only(reason):
    """Marks a test of a TensorFlow-only piece (XLA's loop, `tf.function`'s
    tracing, `tf.distribute`, TensorFlow's runtime errors): it skips on the
    other backends with `reason`, which says what it checks there instead
    where something does."""
    return pytest.mark.skipif(BACKEND != "tensorflow", reason=reason)


def to_numpy(x):
    """A tensor (or Keras variable) as a NumPy array on any backend,
    through `keras.ops.convert_to_numpy` (which detaches PyTorch's tensors
    that require grad; JAX's arrays have no `.numpy()`)."""
    return keras.ops.convert_to_numpy(x)


def value_and_gradients(loss_fn, variables, has_aux=False):
    """`loss_fn()` and its gradients with respect to `variables` (Keras
    variables), through each backend's own mechanism.

    `tf.GradientTape` on TensorFlow, `torch.autograd.grad` on PyTorch, and
    on JAX `jax.value_and_grad` of a stateless call (the variables' values
    in a `keras.StatelessScope`, as Keras's own JAX trainer does; state
    that `loss_fn` assigns there, a seed generator's, is not kept; the
    scope collects `add_loss` losses, or `layer.losses` would be empty
    inside `loss_fn` on JAX only). With
    `has_aux`, `loss_fn` returns `(loss, aux)`. Returns `(loss, grads)`,
    or `(loss, grads, aux)`, as NumPy arrays (aux converted leaf by leaf),
    a variable that the loss does not reach getting zeros.
    """
    variables = list(variables)

    def split(out):
        return out if has_aux else (out, None)

    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, aux = split(loss_fn())
        grads = tape.gradient(loss, variables)
    elif BACKEND == "torch":
        import torch

        loss, aux = split(loss_fn())
        grads = torch.autograd.grad(
            loss, [v.value for v in variables], allow_unused=True)
    elif BACKEND == "jax":
        import jax

        def stateless(values):
            with keras.StatelessScope(
                    state_mapping=list(zip(variables, values)),
                    collect_losses=True):
                return split(loss_fn())

        (loss, aux), grads = jax.value_and_grad(stateless, has_aux=True)(
            [v.value for v in variables])
    else:
        raise NotImplementedError(BACKEND)
    grads = [np.zeros(v.shape, v.dtype) if g is None else to_numpy(g)
             for v, g in zip(variables, grads)]
    if aux is not None:
        aux = keras.tree.map_structure(to_numpy, aux)
    return (to_numpy(loss), grads) + ((aux,) if has_aux else ())


# ------------------------------------------------------- NumPy maths
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def logsumexp(a, axis=-1):
    top = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def numpy_forward_backward(initial, transition, log_b):
    """The HMM recursions of one sequence `log_b` (T, K) in log space, from
    `initial` (K,) and the row-stochastic `transition`: a dict of the
    filter, the predicted (prior) probabilities and the smoother (T, K),
    the expected transitions (K, K) and log p(x)."""
    steps, k = log_b.shape
    log_p = np.log(transition)
    log_alpha = np.empty((steps, k))
    log_predicted = np.empty((steps, k))
    log_predicted[0] = np.log(initial)
    for t in range(steps):
        if t:
            log_predicted[t] = logsumexp(log_alpha[t - 1][:, None] + log_p, 0)
        log_alpha[t] = log_predicted[t] + log_b[t]
    log_beta = np.zeros((steps, k))
    for t in range(steps - 2, -1, -1):
        log_beta[t] = logsumexp(log_p + log_b[t + 1] + log_beta[t + 1], 1)
    log_likelihood = logsumexp(log_alpha[-1], 0)
    xi = np.zeros((k, k))
    for t in range(1, steps):
        xi += np.exp(log_alpha[t - 1][:, None] + log_p + log_b[t]
                     + log_beta[t] - log_likelihood)

    def normalized(log_values):
        return np.exp(log_values - logsumexp(log_values, 1)[:, None])

    return dict(filtered=normalized(log_alpha),
                predicted=normalized(log_predicted),
                smoothed=np.exp(log_alpha + log_beta - log_likelihood),
                expected_transitions=xi, log_likelihood=log_likelihood)


def numpy_viterbi(initial, transition, log_b):
    """The most likely state path of one sequence `log_b` (T, K), in log
    space (as `numpy_forward_backward`)."""
    steps, k = log_b.shape
    log_p = np.log(transition)
    score = np.log(initial) + log_b[0]
    back = np.zeros((steps, k), int)
    for t in range(1, steps):
        candidates = score[:, None] + log_p          # (from, to)
        back[t] = candidates.argmax(0)
        score = candidates.max(0) + log_b[t]
    path = np.empty(steps, int)
    path[-1] = score.argmax()
    for t in range(steps - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def normal_log_pdf(x, mean, scale):
    """log N(x; mean, scale^2), elementwise."""
    return (-0.5 * ((x - mean) / scale) ** 2
            - np.log(scale * np.sqrt(2 * np.pi)))


def numpy_switched_lstms(x, h, c, z, cell):
    """One step of the K LSTMs of a `MarkovLSTMCell`, each with its own
    weights (`cell.lstm_weights(k)`, gates i, f, g, o), mixed by the switch
    `z` of shape (batch, K): returns the new h and c."""
    hs, cs = [], []
    for k in range(cell.num_states):
        kernel, recurrent, bias = cell.lstm_weights(k)
        i, f, g, o = np.split(x @ kernel + h @ recurrent + bias, 4, axis=-1)
        c_k = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        hs.append(sigmoid(o) * np.tanh(c_k))
        cs.append(c_k)
    h_new = np.einsum("bk,kbm->bm", z, np.stack(hs))
    c_new = np.einsum("bk,kbm->bm", z, np.stack(cs))
    return h_new, c_new


# ------------------------------------------------------------ layers
def make_layer(kind, units=5, seed=1, **kwargs):
    """A small layer of either kind: `"markov"`, a `MarkovLSTM` with 3
    states unless `num_states` says otherwise, or `"vrnn"`, a `VRNN` with a
    latent of 2."""
    if kind == "markov":
        return keras_mrnn.MarkovLSTM(
            units, seed=seed, **{"num_states": 3, **kwargs})
    if kind == "vrnn":
        return keras_mrnn.VRNN(units, latent_dim=2, seed=seed, **kwargs)
    raise ValueError(f"Unknown kind of layer: {kind!r}.")


# -------------------------------------------- the stateful test models
# Batch size, window (time steps) and features of the stateful models.
B, T, F = 4, 5, 2


def stateful_test_layer(kind, **kwargs):
    """6 units, seed 3; the VRNN takes the posterior mean at inference, so
    that both kinds are deterministic there."""
    if kind == "vrnn":
        kwargs = {"inference_latent": "mean", **kwargs}
    return make_layer(kind, units=6, seed=3, **kwargs)


def stateful_model(kind, jit_compile=False, batch_size=B, window=T):
    """Stateful layer -> Dense(1), MSE (plus the VRNN's own ELBO)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(batch_shape=(batch_size, window, F))
    h = stateful_test_layer(kind, stateful=True)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=jit_compile)
    return model


def stateful_data(n, seed=0):
    """n windows (n, T, F) and the sum of their first feature (n, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, T, F)).astype("float32")
    return x, x[:, :, :1].sum(axis=1)


def state_arrays(model):
    return [np.array(s) for s in stateful.get_states(model)]


# ----------------------------------------------- random weights for tests
# `randomize(..., scales=SMALL_AR)`: full AR matrices (an `HMMSwitch`'s
# `switch_ar`) at 0.3, so that the process stays near stationary.
SMALL_AR = {"switch_ar": 0.3}


def randomize(layer, seed=0, scale=0.5, names=None, scales=None):
    """Random weights for the equation tests: no term trivially zero or
    symmetric between states.

    Assigns `normal * scale` draws, one weight after the other from one
    generator, to `layer.weights` (a layer, cell or switch), scalars left
    alone (and drawing nothing), or with `names` to the weights of those
    names, in that order. `scales` maps weight names to another scale.
    `seed` is an int for `np.random.default_rng` or a NumPy generator
    (`np.random.RandomState(seed)` draws the legacy stream).
    """
    rng = seed if hasattr(seed, "normal") else np.random.default_rng(seed)
    if names is None:
        weights = [w for w in layer.weights if len(w.shape)]
    else:
        weights = []
        for name in names:
            found = [w for w in layer.weights if w.name == name]
            assert len(found) == 1, f"{len(found)} weights named {name!r}"
            weights += found
    for weight in weights:
        spread = (scales or {}).get(weight.name, scale)
        weight.assign(
            (rng.normal(size=weight.shape) * spread).astype(weight.dtype))


def assert_input_likelihood_trains(layer, x, weights):
    """Every one of `weights` gets a nonzero gradient from the input
    log-likelihood loss that `layer` adds (its first loss) on `x`."""

    def loss_fn():
        layer(x, training=True)
        return layer.losses[0]

    _, grads = value_and_gradients(loss_fn, weights)
    for weight, grad in zip(weights, grads):
        assert np.any(np.abs(grad) > 0), weight.name
