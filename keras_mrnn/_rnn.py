"""Shared recurrent loop of the package's layers (private).

The layers run their cell in the loop that `keras.layers.RNN` runs, and add
what it lacks: the guard on stateful batch sizes, and packed per-step
outputs that subclasses split after the loop in `_unpack`, where losses can
be added (`add_loss` inside the loop fails, see docs/KERAS_NOTES.md).
"""

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
        # By default each step projects its own inputs (`cell.call`:
        # `project_inputs`, then `step`): that work does not wait for
        # h_{t-1}, so TensorFlow runs it beside the recurrent chain.
        # Projecting all steps in one matmul before the loop measured slower
        # for MarkovLSTM on a 2-core CPU (8 % at 28 steps, 20 % at 500, where
        # its projected sequence alone is 614 MB). Cells whose
        # `project_inputs` takes whole sequences can ask for it with
        # `project_before_loop = True` (VRNN: see its `project_inputs`).
        loop_inputs, run_step = sequences, self.cell.call
        if getattr(self.cell, "project_before_loop", False):
            loop_inputs = self.cell.project_inputs(sequences, training)
            run_step = self.cell.step

        def step(inputs, states):
            output, new_states = run_step(inputs, states, training=training)
            return output, list(new_states)

        return_all = bool(self.return_sequences or self._needs_all_outputs)
        last_output, outputs, states = backend.rnn(
            step,
            loop_inputs,
            initial_state,
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=return_all,
        )
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
