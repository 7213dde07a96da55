"""What MarkovLSTM and VRNN share through `_rnn.SteppedRNN`,
`_rnn.SteppedCell` and `_scheduled.ScheduledScalar` (issue 11): configs
with the keys saved before the refactor, cells built from the layers'
arguments, output shapes and masks, the masked mean, the scheduled
scalars."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_mrnn
from keras_mrnn import MarkovLSTM
from keras_mrnn import MarkovLSTMCell
from keras_mrnn import VRNN
from keras_mrnn import VRNNCell

# Run on every backend by .ci/run (see conftest.py).

# The config keys that `.keras` files saved before issue 11 hold: the
# layers must still write (and read) exactly these.
MARKOV_CELL_KEYS = {
    "activation", "bias_constraint", "bias_initializer", "bias_regularizer",
    "dropout", "dtype", "inference_switch", "kernel_constraint",
    "kernel_initializer", "kernel_regularizer", "markov_transition", "name",
    "num_states", "output_switches", "recurrent_activation",
    "recurrent_constraint", "recurrent_dropout", "recurrent_initializer",
    "recurrent_regularizer", "seed", "straight_through", "switch",
    "temperature", "trainable", "unit_forget_bias", "units", "use_bias",
}
RNN_KEYS = {
    "go_backwards", "loop_jit_compile", "return_sequences", "return_state",
    "stateful", "unroll", "zero_output_for_mask",
}
MARKOV_KEYS = (MARKOV_CELL_KEYS - {"output_switches"}) | RNN_KEYS | {
    "entropy_weight", "input_likelihood_weight", "return_switches",
}
VRNN_CELL_KEYS = {
    "activation", "bias_initializer", "bias_regularizer", "dtype",
    "feature_units", "hidden_units", "inference_latent",
    "kernel_initializer", "kernel_regularizer", "latent_dim", "likelihood",
    "min_scale", "name", "packed_output", "recurrence",
    "recurrent_initializer", "recurrent_regularizer", "seed", "trainable",
    "unit_forget_bias", "units",
}
VRNN_KEYS = (VRNN_CELL_KEYS - {"packed_output"}) | RNN_KEYS | {"kl_weight"}


def test_config_keys_are_those_saved_before():
    assert set(MarkovLSTMCell(4).get_config()) == MARKOV_CELL_KEYS
    assert set(MarkovLSTM(4).get_config()) == MARKOV_KEYS
    assert set(VRNNCell(4, 2).get_config()) == VRNN_CELL_KEYS
    assert set(VRNN(4, 2).get_config()) == VRNN_KEYS


def test_configs_round_trip_with_every_cell_argument():
    layer = MarkovLSTM(
        5, num_states=2, temperature=0.5, straight_through=False,
        inference_switch="sample", markov_transition=True,
        switch="predictive", activation="relu",
        recurrent_activation="hard_sigmoid", use_bias=False,
        kernel_initializer="he_normal", recurrent_initializer="zeros",
        bias_initializer="ones", unit_forget_bias=False,
        kernel_regularizer="l2", recurrent_regularizer="l1",
        bias_regularizer="l1", kernel_constraint="non_neg",
        recurrent_constraint="unit_norm", bias_constraint="max_norm",
        dropout=0.1, recurrent_dropout=0.2, seed=3, return_switches=True,
        entropy_weight=0.1, input_likelihood_weight=0.2,
        loop_jit_compile=False, name="m",
    )
    config = layer.get_config()
    assert config["recurrent_activation"] == "hard_sigmoid"
    assert config["kernel_constraint"]["class_name"] == "NonNeg"
    again = MarkovLSTM.from_config(config)
    assert again.get_config() == config
    assert again.cell.output_switches and again.cell.name == "markov_lstm_cell"

    vrnn = VRNN(6, 3, likelihood="bernoulli", recurrence="gru",
                kl_weight=0.25, feature_units=4, hidden_units=5,
                activation="tanh", min_scale=0.01, inference_latent="mean",
                kernel_regularizer="l2", seed=2, name="v")
    config = vrnn.get_config()
    again = VRNN.from_config(config)
    assert again.get_config() == config
    assert again.cell.packed_output and again.cell.name == "vrnn_cell"
    assert again.kl_weight == 0.25


def test_cell_arguments_reach_the_cell_and_derived_ones_are_refused():
    layer = MarkovLSTM(4, dropout=0.25, seed=7, dtype="float64",
                       trainable=False)
    assert layer.cell.dropout == 0.25 and layer.cell.seed == 7
    assert layer.cell.dtype_policy.name == "float64"
    assert not layer.cell.trainable
    # The layer sets these from its own arguments: not layer arguments.
    with pytest.raises((TypeError, ValueError), match="output_switches"):
        MarkovLSTM(4, output_switches=True)
    with pytest.raises((TypeError, ValueError), match="packed_output"):
        VRNN(4, 2, packed_output=False)


def test_old_config_loads():
    # A MarkovLSTM config as written before issue 11 (keys in that order).
    config = {
        "name": "markov_lstm", "trainable": True, "dtype": "float32",
        "return_sequences": True, "return_state": False,
        "go_backwards": False, "stateful": False, "unroll": False,
        "zero_output_for_mask": False, "loop_jit_compile": "auto",
        "units": 3, "num_states": 2, "temperature": 2.0,
        "straight_through": True, "inference_switch": "argmax",
        "markov_transition": False, "switch": "linear",
        "activation": "tanh", "recurrent_activation": "sigmoid",
        "use_bias": True, "kernel_initializer": "glorot_uniform",
        "recurrent_initializer": "orthogonal", "bias_initializer": "zeros",
        "unit_forget_bias": True, "kernel_regularizer": None,
        "recurrent_regularizer": None, "bias_regularizer": None,
        "kernel_constraint": None, "recurrent_constraint": None,
        "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0,
        "seed": None, "return_switches": True, "entropy_weight": 0.0,
        "input_likelihood_weight": 0.0,
    }
    layer = MarkovLSTM.from_config(config)
    assert layer.temperature == 2.0 and layer.return_switches


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
def test_output_shapes_and_masks(return_sequences, return_state):
    inputs = keras.Input((7, 3))
    mask = keras.layers.Masking()(inputs)
    markov = MarkovLSTM(4, num_states=2, return_switches=True,
                        return_sequences=return_sequences,
                        return_state=return_state)
    vrnn = VRNN(5, 2, return_sequences=return_sequences,
                return_state=return_state)
    h = (None, 7, 4) if return_sequences else (None, 4)
    states = [(None, 4)] * 2 if return_state else []
    expected = [h, (None, 7, 2), (None, 7, 2)] + states
    assert [tuple(t.shape) for t in markov(mask)] == expected
    masks = markov.compute_mask(None, ops.ones((2, 7), "bool"))
    assert [m is None for m in masks] == (
        [not return_sequences, False, False] + [True] * len(states))
    outputs = vrnn(mask)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    h = (None, 7, 5) if return_sequences else (None, 5)
    assert [tuple(t.shape) for t in outputs] == (
        [h] + ([(None, 5)] * 2 if return_state else []))


@pytest.mark.parametrize("go_backwards", [False, True])
def test_weighted_mean_counts_valid_steps_in_output_order(go_backwards):
    layer = MarkovLSTM(4, go_backwards=go_backwards)
    mask = np.array([[True, True, False], [False, True, True]])
    values = ops.convert_to_tensor(np.arange(6, dtype="float32").reshape(2, 3))
    weights = layer._step_weights(mask, values)
    order = mask[:, ::-1] if go_backwards else mask
    np.testing.assert_array_equal(ops.convert_to_numpy(weights), order)
    want = np.arange(6).reshape(2, 3)[order].mean()
    assert float(layer._weighted_mean(values, weights)) == pytest.approx(want)
    ones = layer._step_weights(None, values)
    assert float(layer._weighted_mean(values, ones)) == pytest.approx(2.5)
    nothing = ops.zeros((2, 3))
    assert float(layer._weighted_mean(values, nothing)) == 0.0


@pytest.mark.parametrize("owner, name, bad, message", [
    (lambda: MarkovLSTMCell(4, temperature=2.0), "temperature", 0.0,
     "temperature"),
    (lambda: VRNN(4, 2, kl_weight=2.0), "kl_weight", -1.0, "kl_weight"),
])
def test_scheduled_scalars(owner, name, bad, message):
    layer = owner()
    assert getattr(layer, name) == 2.0
    setattr(layer, name, 3.0)
    assert getattr(layer, name) == 3.0
    with pytest.raises(ValueError, match=message):
        setattr(layer, name, bad)
    if isinstance(layer, MarkovLSTMCell):
        layer.build((None, 3))
    else:
        layer.build((None, 5, 3))
    variable = getattr(layer, f"_{name}")
    assert variable.name == name and not variable.trainable
    assert float(variable.numpy()) == 3.0
    setattr(layer, name, 0.5)
    assert getattr(layer, name) == 0.5 and float(variable.numpy()) == 0.5
    assert layer.get_config()[name] == 0.5
    assert isinstance(getattr(layer, name), float)
    assert type(layer).__dict__[name].__doc__.startswith("The current")


def test_scheduled_scalar_stays_float32_under_mixed_precision():
    layer = MarkovLSTM(4, num_states=2, dtype="mixed_float16",
                       temperature=0.7)
    layer(np.zeros((2, 3, 3), "float32"), training=True)
    assert layer.cell._temperature.dtype == "float32"
    assert layer.temperature == pytest.approx(0.7)
    vrnn = VRNN(4, 2, dtype="mixed_float16", kl_weight=0.5)
    vrnn(np.zeros((2, 3, 3), "float32"))
    assert vrnn._kl_weight.dtype == "float32"
    assert keras_mrnn.VRNN.kl_weight.__doc__.startswith("The current")


def _settings(cell):
    return {
        w.name: (
            type(w.regularizer).__name__ if w.regularizer else None,
            type(w.constraint).__name__ if w.constraint else None,
        )
        for w in cell.weights
    }


def test_markov_weights_get_their_kind_of_settings():
    for switch, switch_weights in [
        ("linear", {"switch_kernel": ("L2", "NonNeg")}),
        ("predictive", {"switch_mean_kernel": ("L2", "NonNeg"),
                        "switch_mean_bias": (None, None),
                        "switch_log_scale": (None, None)}),
    ]:
        cell = MarkovLSTMCell(
            3, num_states=2, switch=switch, markov_transition=True,
            kernel_regularizer="l2", recurrent_regularizer="l1",
            bias_regularizer="l2", kernel_constraint="non_neg",
            recurrent_constraint="unit_norm", bias_constraint="max_norm")
        cell.build((None, 4))
        assert _settings(cell) == {
            "kernel": ("L2", "NonNeg"),
            "recurrent_kernel": ("L1", "UnitNorm"),
            **switch_weights,
            "switch_recurrent_kernel": ("L1", "UnitNorm"),
            "bias": ("L2", "MaxNorm"),
            "switch_bias": ("L2", "MaxNorm"),
            "transition_kernel": (None, None),
            "temperature": (None, None),
        }


def test_vrnn_weights_get_their_kind_of_settings():
    cell = VRNNCell(3, 2, kernel_regularizer="l2", recurrent_regularizer="l1",
                    bias_regularizer="l1")
    cell.build((None, 4))
    settings = _settings(cell)
    assert settings.pop("recurrent_kernel") == ("L1", None)
    assert settings == {
        name: ("L1" if name.endswith("_bias") else "L2", None)
        for name in settings
    }
    assert len(settings) == 14


@pytest.mark.parametrize("cell", [MarkovLSTMCell(3), VRNNCell(3, 2)])
def test_cells_refuse_a_step_shape_without_features(cell):
    name = type(cell).__name__
    with pytest.raises(ValueError, match=(
            rf"^{name} '{cell.name}' expects step inputs of shape \(batch, "
            r"features\) with known features, i.e. sequences of shape "
            r"\(batch, time, features\). Received step shape \(None, None\)"
            r".$")):
        cell.build((None, None))


def test_cell_objects_are_read_from_their_identifiers():
    cell = MarkovLSTMCell(3, activation="relu", recurrent_activation="tanh",
                          kernel_initializer="zeros", bias_constraint="non_neg")
    assert cell.activation is keras.activations.relu
    assert cell.recurrent_activation is keras.activations.tanh
    assert isinstance(cell.kernel_initializer, keras.initializers.Zeros)
    assert isinstance(cell.bias_constraint, keras.constraints.NonNeg)
    assert cell.kernel_regularizer is None
    vrnn = VRNNCell(3, 2, activation="tanh", seed=5)
    assert vrnn.activation is keras.activations.tanh
    assert vrnn.seed == 5 and vrnn.seed_generator is not None
    with pytest.raises(ValueError):
        MarkovLSTMCell(3, kernel_initializer="no_such_initializer")
