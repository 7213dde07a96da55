"""Everything that depends on which Keras backend runs (private).

The rest of the package is written in `keras.ops`; what one backend needs
and the others do not lives here, so that `import keras_mrnn` works on
TensorFlow, JAX and PyTorch, with TensorFlow installed or not:

- TensorFlow: the layers' loop compiled alone with XLA (`compiled_loop`),
  the stateful guard's graph checks, `tf.function` for the VRNN's analysis
  methods, `tf.distribute` replicas, and TFP's distributions. TensorFlow is
  imported only when it is the backend (or, for `is_tf_dataset`, when it
  is already imported).
- JAX: whether seed generators can advance where a step runs (inside
  `lax.scan` they cannot: their update would be dropped and the noise
  frozen), and the state `fit` carries between steps, which callbacks
  must write back before they set a variable.
- PyTorch: nothing beyond a copy of stateful states (see `_rnn.py`).
"""

import sys

import keras
from keras import ops

from keras_mrnn import _internals


def name():
    """The running Keras backend: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


def is_tensorflow():
    return name() == "tensorflow"


def _tf():
    import tensorflow as tf

    return tf


# ------------------------------------------------------------- TensorFlow
def executing_eagerly():
    """Whether ops run eagerly: TensorFlow's answer; True on JAX and
    PyTorch, which have no graph mode the package must tell apart."""
    if not is_tensorflow():
        return True
    return _tf().executing_eagerly()


def gpu_visible():
    """Whether TensorFlow sees a GPU (False off TensorFlow)."""
    if not is_tensorflow():
        return False
    return bool(_tf().config.list_logical_devices("GPU"))


def in_xla_context():
    """True when tracing for XLA, False when not, None when unknown.

    Off TensorFlow always False: JAX's whole step is one XLA program and
    nothing in the package depends on knowing it.
    """
    if not is_tensorflow():
        return False
    tf = _tf()
    try:
        # Only picks the wording of the stateful guard's error under XLA
        # and whether the layers project before their loop; its absence
        # is not fatal (None: the guard says less). Private TF API.
        from tensorflow.python.ops.control_flow_util import (
            GraphOrParentsInXlaContext,
        )
    except ImportError:  # pragma: no cover
        return None
    if tf.executing_eagerly():
        return False
    try:
        return bool(GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # pragma: no cover
        return None


def replicas_in_sync():
    """The replicas of the active `tf.distribute` strategy (1 off TF)."""
    if not is_tensorflow():
        return 1
    tf = _tf()
    if not tf.distribute.has_strategy():
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync


def model_replicas(model):
    """The replicas of `model`'s `tf.distribute` strategy (1 off TF)."""
    if not is_tensorflow():
        return 1
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        strategy = _tf().distribute.get_strategy()
    return strategy.num_replicas_in_sync


def is_tf_dataset(x):
    """Whether `x` is a `tf.data.Dataset` (TensorFlow need not be the
    backend: Keras's JAX and torch trainers take datasets too)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(x, tf.data.Dataset)


def function(fn, variables=None):
    """`fn` compiled once per input signature where the backend can.

    On TensorFlow a `tf.function` (without autograph, retracing relaxed).
    On JAX, given `variables` (a callable returning the Keras variables
    that `fn` reads or assigns: weights, seed generators' states), a
    `jax.jit` of a stateless version of `fn` (their values in, their new
    values out and assigned back), so that it compiles once per shape
    instead of at every call; without `variables`, `fn` itself. On PyTorch,
    where ops run eagerly, `fn` under `torch.no_grad()`: the analysis
    methods that use it give values, not gradients (on JAX neither), and
    autograd's record of every op of a long loop costs time and memory.
    """
    if is_tensorflow():
        return _tf().function(fn, reduce_retracing=True, autograph=False)
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()(fn)
    if variables is None or keras.backend.backend() != "jax":
        return fn
    import jax

    def stateless(values, *args):
        held = variables()
        with keras.StatelessScope(
                state_mapping=list(zip(held, values))) as scope:
            outputs = fn(*args)
        return outputs, [scope.get_current_value(v) for v in held]

    compiled = jax.jit(stateless)

    def call(*args):
        held = variables()
        outputs, values = compiled([v.value for v in held], *args)
        for variable, value in zip(held, values):
            variable.assign(value)
        return outputs

    # For tests: the number of compilations so far.
    call.cache_size = compiled._cache_size
    return call


def guard_dynamic_batch(sequences, expected, message, xla_name):
    """The stateful guard for a batch size unknown when tracing (only
    TensorFlow's graphs have those): see `check_stateful_batch_size`."""
    tf = _tf()
    sequences = tf.convert_to_tensor(sequences)
    rank = len(sequences.shape)
    static_shape = (expected,) + (None,) * (rank - 1)
    xla = in_xla_context()
    if xla:
        # XLA compiles Assert to a no-op; EnsureShape is checked when the
        # step is compiled for the concrete shape of the batch, and its
        # error quotes the name of the checked tensor: that name is the
        # message. At the root name scope, so that it leads the line.
        with tf.compat.v1.get_default_graph().name_scope(""):
            sequences = tf.identity(sequences, name=xla_name)
        return tf.ensure_shape(sequences, static_shape)
    name = f"stateful_batch_size_must_be_{expected}"
    check = tf.debugging.assert_equal(
        tf.shape(sequences)[0], expected, message=message
    )
    with tf.control_dependencies([check]):
        sequences = tf.identity(sequences, name=name)
    if xla is None:  # pragma: no cover
        # Unknown context: keep both. (Outside XLA, Grappler may then run
        # EnsureShape before the Assert, so its terser message can win.)
        sequences = tf.ensure_shape(sequences, static_shape)
    return sequences


def compiled_loop(layer, sequences, initial_state, mask, training):
    """`layer._run_loop` compiled with XLA, with a gradient that recomputes
    it (TensorFlow only; see `SteppedRNN.loop_jit_compile`).

    Differentiating a compiled while loop directly fails in TensorFlow
    ("TensorList crossing the XLA/TF boundary": the forward function
    would hand its per-step accumulators to the backward one). So the
    forward runs unrecorded, and the backward, compiled too, runs the
    loop again under its own tape from the same random state (the
    cell's non-trainable variables, seed generators included, are set
    back for it and restored after): in training the loop's forward
    pass runs twice. Every tensor that changes between calls is an
    argument of the compiled functions (a captured eager tensor would be
    frozen into the first trace); weights and the seed generators'
    states are variables, read and updated by reference.
    """
    tf = _tf()
    # The compiled loop's forward pass must run unrecorded by gradient
    # tapes; `tf.GradientTape.stop_recording` needs the tape object, which
    # a layer does not have. Private TF API, stable since TF 2.0.
    from tensorflow.python.eager.record import stop_recording

    forward = layer._cached(
        "forward",
        lambda: tf.function(
            layer._run_loop, jit_compile=True, autograph=False
        ),
    )
    # The backward pass is traced later, outside the layer's call: it
    # must read the weights in the dtype the forward pass read them in
    # (float16 under a mixed policy).
    scope = _internals.get_autocast_scope()
    autocast = None if scope is None else scope.dtype
    # Read before the forward pass advances the seed generators.
    snapshot_variables = list(layer.cell.non_trainable_variables)
    snapshot = [tf.convert_to_tensor(v) for v in snapshot_variables]
    sequences = ops.convert_to_tensor(sequences)
    if mask is not None:
        mask = ops.convert_to_tensor(mask)

    @tf.custom_gradient
    def loop(sequences, *initial_state):
        # Tapes and `custom_gradient` learn which weights the loop uses
        # by watching them being read; the unrecorded call below does
        # not tell them (once traced), so read them here.
        for variable in layer.cell.trainable_variables:
            tf.convert_to_tensor(variable)
        with stop_recording():
            last_output, outputs, states = forward(
                sequences, list(initial_state), mask, training
            )
        results = [last_output, outputs, *states]

        def grad(*result_grads, variables=None):
            variables = list(variables or [])
            backward = layer._cached(
                ("backward", autocast) + tuple(id(v) for v in variables),
                lambda: tf.function(
                    _loop_gradient(
                        layer, snapshot_variables, variables, autocast
                    ),
                    jit_compile=True, autograph=False,
                ),
            )
            result_grads = [
                ops.zeros_like(r) if g is None else g
                for r, g in zip(results, result_grads)
            ]
            input_grads, variable_grads = backward(
                sequences, list(initial_state), mask, training, snapshot,
                result_grads,
            )
            if variables:
                return input_grads, variable_grads
            return input_grads

        return results, grad

    results = loop(sequences, *initial_state)
    return results[0], results[1], list(results[2:])


def _loop_gradient(layer, snapshot_variables, variables, autocast):
    """The backward pass of `compiled_loop`, to be compiled."""
    tf = _tf()

    def gradient(sequences, initial_state, mask, training, snapshot,
                 result_grads):
        current = [tf.convert_to_tensor(v) for v in snapshot_variables]
        for variable, value in zip(snapshot_variables, snapshot):
            variable.assign(value)
        with tf.GradientTape() as tape, _internals.AutocastScope(autocast):
            tape.watch(sequences)
            tape.watch(initial_state)
            last_output, outputs, states = layer._run_loop(
                sequences, initial_state, mask, training
            )
        grads = tape.gradient(
            [last_output, outputs, *states],
            [sequences, *initial_state, *variables],
            output_gradients=result_grads,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        for variable, value in zip(snapshot_variables, current):
            variable.assign(value)
        count = 1 + len(initial_state)
        return grads[:count], grads[count:]

    return gradient


# -------------------------------------------------------------------- JAX
def seeds_frozen_here(seed_generator, inputs):
    """Whether drawing from `seed_generator` with `inputs` in hand would
    give frozen noise: on JAX, inside a `lax.scan` (Keras's RNN loop)
    the generator's state update is discarded, so every step, and every
    later call, repeats the same draw.

    Detected by the trace: `inputs` belong to a trace that the generator's
    state does not (the scan's, below the eager or `jit` one that holds the
    state). Always False off JAX, and when JAX's internals are not where
    they are looked for (then the check cannot help, and says nothing).
    """
    if name() != "jax":
        return False
    import jax

    if not isinstance(inputs, jax.core.Tracer):
        return False
    state = seed_generator.state.value
    trace = getattr(inputs, "_trace", None)
    if trace is None:  # pragma: no cover
        return False
    if not isinstance(state, jax.core.Tracer):
        # The state is concrete: eager JAX; only a trace below the
        # eager level (a scan or a jit of the user's) holds `inputs`.
        return True
    # Differentiation (`fit`'s `value_and_grad`) traces the inputs a level
    # above the one that holds the generator, in the same program: look
    # through it. A loop's body (a jaxpr trace of its own) stops the walk.
    while trace is not state._trace and type(trace).__name__ in (
        "JVPTrace", "LinearizeTrace"
    ):
        trace = getattr(trace, "parent_trace", None)
    return trace is not state._trace


def sync_training_state(model):
    """Before a callback sets a variable in the middle of an epoch: on JAX,
    writes the state that `fit` carries between its jitted steps back into
    the model's variables, so that the next step reads them again (with
    the callback's change) instead of the carried copy, which would undo
    it. A no-op elsewhere, and on JAX between epochs (already written)."""
    sync = getattr(model, "jax_state_sync", None)
    if name() == "jax" and sync is not None:
        sync()


def widest_float():
    """The widest float dtype the backend computes in: "float64", but on
    JAX without `jax_enable_x64` (its default), where float64 arrays are
    cut to float32 (with a warning), "float32"."""
    if name() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "float32"
    return "float64"


# ---------------------------------------------------------- distributions
_tfd = None


def distributions():
    """Normal and Bernoulli distributions with `sample`, `log_prob`,
    `mean` and `kl_divergence`: `tfp.distributions` on TensorFlow (imported
    on first use: it takes seconds), `keras_mrnn._distributions` (the
    same interface in `keras.ops`) on JAX and PyTorch, where TFP's
    TensorFlow distributions cannot take the backend's arrays."""
    global _tfd
    if not is_tensorflow():
        from keras_mrnn import _distributions

        return _distributions
    if _tfd is None:
        import tensorflow_probability as tfp

        _tfd = tfp.distributions
    return _tfd
