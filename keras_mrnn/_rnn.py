"""The base of the package's cells and layers (private).

`SteppedCell` and `SteppedRNN` hold what `MarkovLSTMCell`/`MarkovLSTM` and
`VRNNCell`/`VRNN` share. The layers run their cell in the loop that
`keras.layers.RNN` runs (with the inputs of all steps projected before the
loop under XLA), and add what it lacks: the guard on stateful batch sizes,
packed per-step outputs that subclasses split after the loop in `_unpack`,
where losses can be added (`add_loss` inside the loop fails, see
docs/KERAS_NOTES.md), and the option of compiling the loop alone with XLA
(`loop_jit_compile`). Each layer takes its cell's arguments as its own and
saves them in its config. `recurrent_loop` is the package's only entry to
Keras's loop: the layers' calls and `VRNN`'s analysis methods all run
through it.
"""

import inspect

import keras
import numpy as np
from keras import activations
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers
from keras import tree

from keras_mrnn import _backend
from keras_mrnn import _internals
from keras_mrnn import _stateful_guard
from keras_mrnn import _validation as check


def recurrent_loop(step, inputs, initial_state, go_backwards=False,
                   mask=None, unroll=False, time_major=False,
                   zero_output_for_mask=False, return_all_outputs=True):
    """Runs `step` over the time axis of `inputs` in Keras's RNN loop.

    The loop of `keras.layers.RNN` (`keras.src.backend.rnn`: masking,
    unrolling, a `tf.while_loop`), which Keras does not export. On
    TensorFlow it calls `step` once more before the loop, at t=0, to learn
    the output's shape: that call runs real ops, and so draws from any seed
    generator `step` uses (docs/KERAS_NOTES.md).

    Args:
        step: Function `(inputs_t, states) -> (output_t, new_states)`.
        inputs: A tensor (or structure of tensors) `(batch, time, ...)`, or
            `(time, batch, ...)` with `time_major=True`.
        initial_state: List of state tensors `(batch, ...)`.
        go_backwards: Whether to run the steps in reverse order (outputs
            come in processing order).
        mask: Optional boolean `(batch, time)` (time-major with
            `time_major=True`).
        unroll: Whether to unroll the loop instead of a `tf.while_loop`.
        time_major: Whether `inputs` and the outputs are time-major.
        zero_output_for_mask: Whether masked steps output zeros instead of
            the previous step's output.
        return_all_outputs: Whether to keep every step's output (`False`:
            only the last one, in `outputs` too).

    Returns:
        `(last_output, outputs, states)`, `states` a list.
    """

    def list_states_step(inputs_t, states):
        output, new_states = step(inputs_t, states)
        return output, list(new_states)

    first = tree.flatten(inputs)[0]
    # Keras's JAX loop (a `lax.scan`) repeats the previous output at a
    # masked step by taking the first state for it, which is wrong for
    # any cell whose output is not its first state (the package's packed
    # outputs fail with "Incompatible shapes"). There it outputs zeros at
    # masked steps instead, and the previous valid output is filled in
    # after the loop (`_repeat_last_valid`).
    fill = (
        mask is not None and not zero_output_for_mask and not unroll
        and _backend.name() == "jax"
    )
    last_output, outputs, states = _internals.rnn(
        list_states_step,
        inputs,
        list(initial_state),
        go_backwards=go_backwards,
        mask=mask,
        unroll=unroll,
        input_length=first.shape[0 if time_major else 1],
        time_major=time_major,
        zero_output_for_mask=zero_output_for_mask or fill,
        return_all_outputs=return_all_outputs or fill,
    )
    if fill:
        outputs = _repeat_last_valid(outputs, mask, go_backwards, time_major)
        last_output = outputs[-1] if time_major else outputs[:, -1]
        if not return_all_outputs:
            outputs = ops.expand_dims(last_output, 0 if time_major else 1)
    return last_output, outputs, list(states)


def _repeat_last_valid(outputs, mask, go_backwards, time_major):
    """`outputs` (in processing order) with each masked step's output
    replaced by the last valid step's before it (zeros before the first),
    as Keras's loop gives them on TensorFlow and PyTorch."""
    if time_major:
        outputs = ops.transpose(outputs, (1, 0, 2))
        mask = ops.transpose(mask, (1, 0))
    mask = ops.cast(mask, "bool")
    if go_backwards:
        mask = ops.flip(mask, axis=1)
    steps = ops.arange(ops.shape(mask)[1], dtype="int32")
    valid_step = ops.where(mask, ops.expand_dims(steps, 0), -1)
    last_valid = ops.associative_scan(ops.maximum, valid_step, axis=1)
    index = ops.expand_dims(ops.maximum(last_valid, 0), -1)
    filled = ops.take_along_axis(
        outputs, ops.broadcast_to(index, ops.shape(outputs)), axis=1
    )
    filled = ops.where(
        ops.expand_dims(last_valid >= 0, -1), filled, ops.zeros_like(filled)
    )
    if time_major:
        filled = ops.transpose(filled, (1, 0, 2))
    return filled


def constructor_arguments(cls):
    """The names of the named arguments of `cls.__init__`, in order."""
    return tuple(
        parameter.name
        for parameter in inspect.signature(cls.__init__).parameters.values()
        if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        and parameter.name != "self"
    )


# The Keras module that reads (`get`) and saves (`serialize`) a cell
# argument, by the end of its name: activations, initializers, regularizers
# and constraints, as `keras.layers.LSTMCell` takes them.
_OBJECT_MODULES = (
    ("activation", activations),
    ("_initializer", initializers),
    ("_regularizer", regularizers),
    ("_constraint", constraints),
)


def _object_module(name):
    for suffix, module in _OBJECT_MODULES:
        if name.endswith(suffix):
            return module
    return None


class SteppedCell:
    """Mixin for cells with `project_inputs(inputs, training)` and
    `step(projected, states, training)`: gives them the standard cell
    `call` (so they also work in a plain `keras.layers.RNN`), zero
    initial states, a `get_config` that saves every argument of the
    constructor from the attribute of the same name, and the argument
    handling and weight creation that the package's cells share."""

    def call(self, inputs, states, training=False):
        projected = self.project_inputs(inputs, training=training)
        return self.step(projected, states, training=training)

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, size), dtype=self.compute_dtype)
            for size in self.state_size
        ]

    def get_config(self):
        config = {}
        for name in constructor_arguments(type(self)):
            value = getattr(self, name)
            module = _object_module(name)
            config[name] = value if module is None else module.serialize(value)
        return {**super().get_config(), **config}

    def _set_objects(self, arguments):
        """Sets the constructor's activations, initializers, regularizers
        and constraints as attributes of the same names, from their
        identifiers in `arguments` (the constructor's `locals()`), each
        read by its Keras module (`keras.activations.get` and the like):
        what `get_config` saves, read back."""
        for name in constructor_arguments(type(self)):
            module = _object_module(name)
            if module is not None:
                setattr(self, name, module.get(arguments[name]))

    def _set_seed(self, seed):
        """Sets `seed` and the generator of the cell's noise."""
        self.seed = check.optional_seed("seed", seed)
        # A generator, not an int: an int seed inside the loop would give
        # every step the same noise (docs/KERAS_NOTES.md).
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _check_step_shape(self, input_shape):
        """Raises unless `input_shape` is `(batch, features)`, known
        features; `build` gets the shape of one step."""
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' expects step inputs of "
                f"shape (batch, features) with known features, i.e. "
                f"sequences of shape (batch, time, features). Received step "
                f"shape {input_shape}."
            )

    def _add_weight(self, name, shape, kind, initializer=None):
        """A weight with the cell's `{kind}_initializer` (or `initializer`),
        `{kind}_regularizer` and `{kind}_constraint` (if the cell has
        them); `kind` is `"kernel"`, `"recurrent"` or `"bias"`."""
        return self.add_weight(
            shape=shape,
            name=name,
            initializer=(
                getattr(self, f"{kind}_initializer") if initializer is None
                else initializer
            ),
            regularizer=getattr(self, f"{kind}_regularizer", None),
            constraint=getattr(self, f"{kind}_constraint", None),
        )


class SteppedRNN:
    """Mixin for subclasses of `keras.layers.RNN` whose cell is a
    `SteppedCell`. Subclasses implement `_unpack(last_output, outputs, mask,
    training)` returning a list of output tensors, and set
    `_needs_all_outputs`, `_cell_class`, `_cell_name` and
    `_derived_cell_arguments`, and `_extra_output_widths` when they return
    per-step outputs after the main one.

    The layer takes the arguments of its cell's constructor as its own
    (`_make_cell` builds the cell from them, `get_config` saves them, and
    `from_config` builds the layer, and so the cell, again from them), but
    for `_derived_cell_arguments`, which the layer derives from its other
    arguments.

    It takes one constructor argument of its own, which subclasses pass on
    through `**kwargs` (and which `get_config` saves):

    Args:
        loop_jit_compile: `"auto"` (default), `True` or `False`: whether to
            compile the layer's recurrent loop alone with XLA, in a
            `tf.function(jit_compile=True)`. Where the model step is already
            XLA-compiled (`model.compile(jit_compile=True)`, or Keras's
            default `"auto"` on a GPU outside a `tf.distribute` strategy)
            the loop is never compiled separately. `"auto"` compiles it when
            TensorFlow sees a GPU and the layer is called inside a
            `tf.function` (in `fit`, `evaluate`, `predict`, or one of your
            own, also in a `tf.distribute` replica), not in eager calls,
            where each new input shape would pay a compilation and Python
            debugging would be lost. `True` compiles it in every call not
            already under XLA, eager ones too; `False` never. On a GPU the
            uncompiled loop launches a few small kernels per op and step
            (8-32x the time of cuDNN's LSTM for `MarkovLSTM`, see the
            README). On a 2-core CPU the compiled loop measured 1.4-2.2x
            slower in training (its gradient recomputes the forward pass)
            and 1.6x faster in inference, hence "auto" leaves CPUs alone.
            TensorFlow only: on JAX, whose `jit` compiles the whole step
            with the loop inside, and on PyTorch, the option is saved but
            has no effect.
    """

    _needs_all_outputs = False
    _cell_class = None
    _cell_name = None
    _derived_cell_arguments = ()

    def __init__(self, *args, loop_jit_compile="auto", **kwargs):
        if not (
            isinstance(loop_jit_compile, bool)
            or (isinstance(loop_jit_compile, str)
                and loop_jit_compile == "auto")
        ):
            raise ValueError(
                "Argument `loop_jit_compile` must be 'auto', True or False. "
                f"Received: loop_jit_compile={loop_jit_compile!r}."
            )
        self.loop_jit_compile = loop_jit_compile
        super().__init__(*args, **kwargs)
        if _backend.name() == "torch":
            # torch.compile retraces the recurrent loop for minutes (a file
            # saved on JAX or TensorFlow carries `jit_compile=True` into
            # `compile`): Keras then runs the model eagerly, with a warning.
            self.supports_jit = False

    @property
    def variables(self):
        # Listed here, not among the weights: JAX's stateless steps carry
        # them like a seed generator's state, and files leave them out.
        variables = super().variables
        seen = {id(v) for v in variables}
        return variables + [
            v for v in self._carried_variables() if id(v) not in seen
        ]

    def _carried_variables(self):
        """Variables that are not weights but that JAX's stateless training,
        evaluation and prediction steps must carry, or their updates are
        dropped: on JAX the states of a stateful layer, which Keras creates
        untracked (they would never carry from batch to batch)."""
        if _backend.name() == "jax" and self.stateful and self.states:
            return list(tree.flatten(self.states))
        return []

    @classmethod
    def _cell_arguments(cls):
        """The cell's constructor arguments that are the layer's too."""
        return tuple(
            name for name in constructor_arguments(cls._cell_class)
            if name not in cls._derived_cell_arguments
        )

    def _make_cell(self, kwargs, **arguments):
        """The layer's cell, from the layer's arguments.

        Args:
            kwargs: The layer's `**kwargs`: the cell's other arguments are
                popped from it, `dtype` and `trainable` read.
            **arguments: The cell's arguments that the layer names itself,
                and its `_derived_cell_arguments`.

        Returns:
            A new `_cell_class`.
        """
        cell_kwargs = {
            name: kwargs.pop(name) for name in self._cell_arguments()
            if name in kwargs and name not in arguments
        }
        return self._cell_class(
            **arguments,
            **cell_kwargs,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name=self._cell_name,
        )

    def build(self, sequences_shape, initial_state_shape=None):
        check.sequence_shape(self.name, sequences_shape)
        super().build(sequences_shape, initial_state_shape)
        # A cell may learn a state's width when built (the Markov cell's
        # hmm switch carries x_{t-1}); `keras.layers.RNN` copied
        # `state_size` before that.
        self.state_size = list(self.cell.state_size)

    def get_config(self):
        config = super().get_config()
        # The cell is saved as the layer's arguments, which build it again.
        del config["cell"]
        cell_config = self.cell.get_config()
        for name in self._cell_arguments():
            config[name] = cell_config[name]
        config["loop_jit_compile"] = self.loop_jit_compile
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _extra_output_widths(self):
        """The widths of the `(batch, time, width)` outputs that follow the
        main output (and precede the states)."""
        return []

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, time = sequences_shape[0], sequences_shape[1]
        units = self.cell.units
        if self.return_sequences:
            shapes = [(batch, time, units)]
        else:
            shapes = [(batch, units)]
        shapes += [(batch, time, width)
                   for width in self._extra_output_widths()]
        if self.return_state:
            shapes += [(batch, size) for size in self.cell.state_size]
        return shapes[0] if len(shapes) == 1 else tuple(shapes)

    def compute_mask(self, _, mask):
        if mask is not None:
            mask = tree.flatten(mask)[0]
        masks = [mask if self.return_sequences else None]
        masks += [mask] * len(self._extra_output_widths())
        if self.return_state:
            masks += [None] * len(self.cell.state_size)
        return masks[0] if len(masks) == 1 else masks

    def _compiles_loop(self):
        """Whether this call runs its loop in an XLA-compiled function."""
        if self.loop_jit_compile is False or not _backend.is_tensorflow():
            # JAX compiles the whole step (the loop is a `lax.scan` inside
            # it); PyTorch runs eagerly.
            return False
        # Keras's shape inference (symbolic calls) and stateless calls
        # record variable updates instead of running them: a compiled
        # function would trap those records inside its own graph.
        if _internals.in_symbolic_scope() or _internals.in_stateless_scope():
            return False
        # Already inside an XLA program: compiling again would only nest it.
        if _backend.in_xla_context() is not False:
            return False
        if self.loop_jit_compile == "auto":
            return not _backend.executing_eagerly() and _backend.gpu_visible()
        return True

    def _cached(self, key, factory):
        """`factory()` (a `tf.function`, a seed generator), made once per
        layer and key.

        Kept in `__dict__`, outside Keras's attribute tracking, so that it
        is neither saved nor exported.
        """
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = factory()
        return cache[key]

    def _compiled_loop(self, sequences, initial_state, mask, training):
        """`_run_loop` compiled with XLA (see `_backend.compiled_loop`)."""
        return _backend.compiled_loop(
            self, sequences, initial_state, mask, training
        )

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if mask is not None:
            # Keras's loop would fail deep inside, on each backend its own
            # way, or take a (batch, time, 1) mask silently.
            shape = mask.shape if hasattr(mask, "shape") else np.shape(mask)
            check.mask_shape(self.name, shape, sequences.shape)
        if self.unroll and sequences.shape[1] is None:
            raise ValueError(
                "Cannot unroll an RNN whose time dimension is undefined: give "
                f"the Input a fixed length. Received shape {sequences.shape}."
            )
        if initial_state is None and self.stateful:
            initial_state = self.states
        if self.stateful:
            # Outside the compiled loop, whose call waits for the check:
            # its plain Assert keeps the message that names the layer.
            sequences = _stateful_guard.check_stateful_batch_size(self, sequences)
        initial_state = self._state_tensors(
            initial_state, ops.shape(sequences)[0]
        )
        if self.stateful and _backend.name() == "torch":
            # The states are assigned in place after the loop; autograd
            # must not find its saved inputs modified (Keras's own RNN
            # copies them per step for the same reason).
            initial_state = [ops.copy(s) for s in initial_state]

        run_loop = self._run_loop
        if self._compiles_loop():
            run_loop = self._compiled_loop
        last_output, outputs, states = run_loop(
            sequences, initial_state, mask, training
        )

        # Variable updates and losses stay outside the compiled loop: the
        # states of a stateful layer are assigned here, and `_unpack` may
        # call `add_loss`, whose tensor must live in the caller's graph.
        if self.stateful:
            # Outside the mixed-precision autocast scope: on PyTorch a Keras
            # variable assigns into `variable.value`, which inside it is a
            # float16 copy, and the states never changed (Keras's own
            # stateful LSTM neither). The variables keep their own dtype.
            with _internals.AutocastScope(None):
                for variable, state in zip(tree.flatten(self.states), states):
                    variable.assign(ops.cast(state, variable.dtype))

        results = self._unpack(last_output, outputs, mask, training)
        states = [ops.cast(s, self.compute_dtype) for s in states]
        if self.return_state:
            return (*results, *states)
        if len(results) == 1:
            return results[0]
        return tuple(results)

    def _state_tensors(self, initial_state, batch_size):
        """The initial states as a list of tensors in the cell's compute
        dtype: `initial_state` (a tensor or a structure of tensors), or the
        cell's zero states when it is `None`."""
        if initial_state is None:
            initial_state = self.cell.get_initial_state(batch_size=batch_size)
        states = tree.flatten(initial_state)
        if len(states) != len(self.cell.state_size):
            raise ValueError(
                f"Layer '{self.name}' has {len(self.cell.state_size)} states "
                f"of sizes {list(self.cell.state_size)} (see `state_size` and "
                f"`return_state`), but `initial_state` has {len(states)}."
            )
        return [
            ops.convert_to_tensor(s, dtype=self.cell.compute_dtype)
            for s in states
        ]

    def _run_loop(self, sequences, initial_state, mask, training):
        """Runs the cell over the sequences: `(last_output, outputs,
        states)`, outputs batch-major. Traced alone when the loop is
        compiled (see `_compiled_loop`)."""
        self._maybe_config_dropout_masks(
            self.cell, sequences[:, 0, :], initial_state
        )
        try:
            return self._loop(sequences, list(initial_state), mask, training)
        finally:
            # Also when tracing fails: masks left on the cell would belong
            # to a dead graph.
            self._maybe_reset_dropout_masks(self.cell)

    def _loop(self, sequences, initial_state, mask, training):
        # Without XLA each step projects its own inputs (`cell.call`:
        # `project_inputs`, then `step`): TensorFlow's executor runs that
        # matmul beside the recurrent chain, and no wide projected sequence
        # is stored (MarkovLSTM(128) at 500 steps: 614 MB). Measured on a
        # 2-core CPU this beat projecting all steps before the loop by 8 % at
        # 28 steps and 20 % at 500. Under XLA, which compiles the loop into
        # one program, the single large matmul before the loop (as cuDNN's
        # LSTM does it) measured as fast or faster. Cells that must project
        # before the loop set `project_before_loop = True` (VRNN, see there).
        # On JAX always: inside its `lax.scan` a seed generator cannot
        # advance (its update would be dropped and the noise frozen), so
        # the noise of all steps is drawn before the loop, and the whole
        # step is one XLA program anyway.
        project_first = (
            getattr(self.cell, "project_before_loop", False)
            or bool(_backend.in_xla_context())
            or _backend.name() == "jax"
        )
        time_major, unpack = False, None
        loop_inputs, run_step = sequences, self.cell.call
        if project_first:
            loop_inputs, time_major, unpack = self._project_before_loop(
                sequences, training
            )
            run_step = self.cell.step
        loop_mask = mask
        if time_major and mask is not None:
            loop_mask = ops.transpose(mask, (1, 0))

        def step(inputs, states):
            if unpack is not None:
                inputs = unpack(inputs)
            return run_step(inputs, states, training=training)

        last_output, outputs, states = recurrent_loop(
            step,
            loop_inputs,
            initial_state,
            go_backwards=self.go_backwards,
            mask=loop_mask,
            unroll=self.unroll,
            time_major=time_major,
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=bool(
                self.return_sequences or self._needs_all_outputs
            ),
        )
        if time_major:
            outputs = ops.transpose(outputs, (1, 0, 2))
        return last_output, outputs, states

    def _project_before_loop(self, sequences, training):
        """Projects the inputs of all steps at once, for the loop.

        Returns `(projected, time_major, unpack)`: what the loop runs over,
        whether it is time-major, and `None` or a function that splits a
        step of a packed single tensor back into the cell's structure.
        """
        # Cells that declare `time_major_projection` get time-major
        # sequences: the loop runs time-major, and only the narrow inputs and
        # outputs are transposed, never the wide projected tensor.
        time_major = getattr(self.cell, "time_major_projection", False)
        if time_major:
            sequences = ops.transpose(sequences, (1, 0, 2))
        projected = self.cell.project_inputs(sequences, training=training)
        unpack = None
        if sequences.shape[1 - int(time_major)] is None and tree.is_nested(
            projected
        ):
            # `rnn` reads the length from a single tensor's shape
            # when it is not static (and, time-major, would read the batch
            # size instead): hand it one batch-major tensor.
            parts = tree.flatten(projected)
            structure = projected
            splits = list(np.cumsum([p.shape[-1] for p in parts])[:-1])
            projected = ops.concatenate(parts, axis=-1)
            if time_major:
                projected = ops.transpose(projected, (1, 0, 2))
                time_major = False

            def unpack(inputs):
                return tree.pack_sequence_as(
                    structure, ops.split(inputs, splits, axis=-1)
                )

        return projected, time_major, unpack

    # ------------------------------------------------- losses in `_unpack`
    def _step_weights(self, mask, like):
        """Float32 weights `(batch, time)` of the steps for `_unpack`: 1 for
        a valid step, 0 for a masked one (ones like `like` without a mask),
        in the order of the outputs."""
        if mask is None:
            return ops.ones_like(like)
        weights = ops.cast(mask, "float32")
        if self.go_backwards:
            # Outputs come in processing order: so must the mask.
            weights = ops.flip(weights, axis=1)
        return weights

    @staticmethod
    def _weighted_mean(values, weights):
        """The mean of `values` over the batch and the valid steps."""
        return ops.sum(values * weights) / ops.maximum(ops.sum(weights), 1.0)
