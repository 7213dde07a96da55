"""Shared recurrent loop of the package's layers (private).

The layers run their cell in the loop that `keras.layers.RNN` runs (with the
inputs of all steps projected before the loop under XLA), and add what it
lacks: the guard on stateful batch sizes, and packed per-step outputs that
subclasses split after the loop in `_unpack`, where losses can be added
(`add_loss` inside the loop fails, see docs/KERAS_NOTES.md).
"""

import numpy as np
from keras import ops
from keras import tree
# `backend.rnn` is the loop that `keras.layers.RNN` itself runs; it is not
# exported under `keras.*`, so we take it from the same place Keras does.
from keras.src import backend

from keras_mrnn import stateful as stateful_lib


class SteppedCell:
    """Mixin for cells with `project_inputs(inputs, training)` and
    `step(projected, states, training)`: gives them the standard cell
    `call` (so they also work in a plain `keras.layers.RNN`) and zero
    initial states."""

    def call(self, inputs, states, training=False):
        projected = self.project_inputs(inputs, training=training)
        return self.step(projected, states, training=training)

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, size), dtype=self.compute_dtype)
            for size in self.state_size
        ]


class SteppedRNN:
    """Mixin for subclasses of `keras.layers.RNN` whose cell is a
    `SteppedCell`. Subclasses implement `_unpack(last_output, outputs, mask,
    training)` returning a list of output tensors, and `_needs_all_outputs`.
    """

    _needs_all_outputs = False

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if self.unroll and sequences.shape[1] is None:
            raise ValueError(
                "Cannot unroll an RNN whose time dimension is undefined: give "
                f"the Input a fixed length. Received shape {sequences.shape}."
            )
        if initial_state is None:
            if self.stateful:
                initial_state = self.states
            else:
                initial_state = self.get_initial_state(
                    batch_size=ops.shape(sequences)[0]
                )
        if self.stateful:
            sequences = stateful_lib.check_stateful_batch_size(self, sequences)
        if not tree.is_nested(initial_state):
            initial_state = [initial_state]
        initial_state = [
            ops.convert_to_tensor(s, dtype=self.cell.compute_dtype)
            for s in tree.flatten(initial_state)
        ]

        self._maybe_config_dropout_masks(
            self.cell, sequences[:, 0, :], initial_state
        )
        # Without XLA each step projects its own inputs (`cell.call`:
        # `project_inputs`, then `step`): TensorFlow's executor runs that
        # matmul beside the recurrent chain, and no wide projected sequence
        # is stored (MarkovLSTM(128) at 500 steps: 614 MB). Measured on a
        # 2-core CPU this beat projecting all steps before the loop by 8 % at
        # 28 steps and 20 % at 500. Under XLA, which compiles the loop into
        # one program, the single large matmul before the loop (as cuDNN's
        # LSTM does it) measured as fast or faster. Cells that must project
        # before the loop set `project_before_loop = True` (VRNN, see there).
        project_first = getattr(
            self.cell, "project_before_loop", False
        ) or bool(stateful_lib._in_xla_context())
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
            output, new_states = run_step(inputs, states, training=training)
            return output, list(new_states)

        return_all = bool(self.return_sequences or self._needs_all_outputs)
        last_output, outputs, states = backend.rnn(
            step,
            loop_inputs,
            initial_state,
            go_backwards=self.go_backwards,
            mask=loop_mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            time_major=time_major,
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=return_all,
        )
        if time_major:
            outputs = ops.transpose(outputs, (1, 0, 2))
        self._maybe_reset_dropout_masks(self.cell)

        if self.stateful:
            for variable, state in zip(tree.flatten(self.states), states):
                variable.assign(ops.cast(state, variable.dtype))

        results = self._unpack(last_output, outputs, mask, training)
        states = [ops.cast(s, self.compute_dtype) for s in states]
        if self.return_state:
            return (*results, *states)
        if len(results) == 1:
            return results[0]
        return tuple(results)

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
            # `backend.rnn` reads the length from a single tensor's shape
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
