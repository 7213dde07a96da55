"""Tests of the switches as components (keras_mrnn.switches): files saved
before them load and predict as they did, a switch is given as a string, an
object or its config, and bad switch arguments fail early and clearly.

The saved files in tests/data were written by main at 7030b5f with
tests/data/make_saved_models.py (one small model per switch, weights moved
off their initial values), with their predictions. Loading must give the
same predictions: the same float32 maths on the same weights, so 1e-5
covers a kernel path's rounding (GPU: ~1e-6 over 7 steps of O(1) values).
"""

import os

import keras
import numpy as np
import pytest

import keras_mrnn
from _helpers import TESTS
from keras_mrnn import MarkovLSTM, MarkovLSTMCell, switches
from keras_mrnn.switches import HMMSwitch, LinearSwitch, PredictiveSwitch

# Run on every backend by .ci/run (see conftest.py).

DATA = os.path.join(TESTS, "data")
SAVED = np.load(os.path.join(DATA, "markov_lstm_predictions_7030b5f.npz"))
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, switch_class, markov_transition", [
    ("linear", LinearSwitch, False),
    ("linear_markov", LinearSwitch, True),
    ("predictive", PredictiveSwitch, False),
    ("hmm", HMMSwitch, False),
])
def test_models_saved_before_switch_components_load_and_predict_the_same(
        name, switch_class, markov_transition, tmp_path):
    path = os.path.join(DATA, f"markov_lstm_{name}_7030b5f.keras")
    model = keras.saving.load_model(path)
    layer = model.layers[1]
    assert isinstance(layer.cell.switch, switch_class)
    assert layer.cell.markov_transition is markov_transition
    y, q = model.predict(SAVED["x"], verbose=0)
    np.testing.assert_allclose(y, SAVED[f"{name}_y"], **TOL)
    np.testing.assert_allclose(q, SAVED[f"{name}_q"], **TOL)
    # Saved again (now with the switch's config), it loads the same.
    model.save(str(tmp_path / "again.keras"))
    again = keras.saving.load_model(str(tmp_path / "again.keras"))
    assert isinstance(again.layers[1].cell.switch.get_config(), dict)
    for got, want in zip(again.predict(SAVED["x"], verbose=0), (y, q)):
        np.testing.assert_allclose(got, want, **TOL)


def test_a_string_an_object_and_a_config_give_the_same_switch():
    for name, cls in [("linear", LinearSwitch),
                      ("predictive", PredictiveSwitch), ("hmm", HMMSwitch)]:
        from_string = MarkovLSTMCell(4, num_states=2, switch=name, name="a")
        from_object = MarkovLSTMCell(4, num_states=2, switch=cls(), name="a")
        config = keras.saving.serialize_keras_object(cls())
        from_config = MarkovLSTMCell(4, num_states=2, switch=config,
                                     name="a")
        for cell in (from_string, from_object, from_config):
            assert type(cell.switch) is cls
            assert cell.switch.cell is cell
        assert from_string.get_config() == from_object.get_config()
        assert from_string.get_config() == from_config.get_config()
    # The cell's markov_transition reaches a switch made from a string.
    cell = MarkovLSTMCell(4, num_states=2, markov_transition=True)
    assert cell.switch.markov_transition and cell.state_size == [4, 4, 2]


def test_a_configured_switch_saves_and_loads(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 6, 2)).astype("float32")
    switch = HMMSwitch(order=2, switching_ar=False, covariance="full",
                       task_gradient=False)
    inputs = keras.Input((None, 2))
    h, q, _ = MarkovLSTM(4, num_states=3, switch=switch, seed=1,
                         return_switches=True, return_sequences=True)(inputs)
    model = keras.Model(inputs, [h, q])
    rng = np.random.default_rng(1)
    for weight in switch.weights:
        weight.assign(rng.normal(size=weight.shape) * 0.3)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[1].cell.switch.get_config() == switch.get_config()
    for got, want in zip(loaded(x), model(x)):
        np.testing.assert_allclose(got, want, **TOL)


def test_bidirectional_gives_each_direction_its_own_switch():
    layer = keras.layers.Bidirectional(
        MarkovLSTM(4, num_states=2, switch=HMMSwitch(order=0)))
    y = layer(np.zeros((2, 5, 3), "float32"))
    assert y.shape == (2, 8)
    forward, backward = layer.forward_layer.cell, layer.backward_layer.cell
    assert forward.switch is not backward.switch
    assert backward.switch.get_config() == forward.switch.get_config()


@pytest.mark.parametrize("switch", [HMMSwitch(order=0), HMMSwitch(order=2),
                                    HMMSwitch(covariance="full")])
def test_one_state_is_an_lstm_whatever_the_switch(switch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    markov = MarkovLSTM(5, num_states=1, switch=switch, return_sequences=True)
    markov.build(x.shape)
    lstm = keras.layers.LSTM(5, return_sequences=True)
    lstm.build(x.shape)
    lstm.set_weights(markov.cell.lstm_weights(0))
    # Keras's LSTM on a GPU runs cuDNN, another kernel path: 2e-4 there
    # (see conftest.kernel_tol); on the CPU the same float32 ops.
    np.testing.assert_allclose(markov(x), lstm(x), rtol=2e-4, atol=2e-4)


def test_a_switch_object_serves_one_cell():
    switch = HMMSwitch()
    MarkovLSTM(4, num_states=2, switch=switch)
    with pytest.raises(ValueError, match="already the switch of cell"):
        MarkovLSTM(4, num_states=2, switch=switch)


@pytest.mark.parametrize("make, error, words", [
    (lambda: HMMSwitch(order=-1), ValueError, "`order`.*order=-1"),
    (lambda: HMMSwitch(order=1.5), TypeError, "`order`.*order=1.5"),
    (lambda: HMMSwitch(order=True), TypeError, "`order`"),
    (lambda: HMMSwitch(covariance="spherical"), ValueError,
     "`covariance`.*'spherical'"),
    (lambda: HMMSwitch(switching_ar="no"), TypeError, "`switching_ar`"),
    (lambda: HMMSwitch(task_gradient=1), TypeError, "`task_gradient`"),
    (lambda: MarkovLSTM(4, switch="gru"), ValueError, "`switch`.*'gru'"),
    (lambda: MarkovLSTM(4, switch=42), TypeError, "`switch`.*42"),
    (lambda: MarkovLSTMCell(4, switch=keras.layers.Dense(2)), TypeError,
     "`switch`.*Dense"),
    (lambda: MarkovLSTM(4, switch="linear", order=2), ValueError,
     "`order`.*HMMSwitch\\(order=2\\).*switch='linear'"),
    (lambda: MarkovLSTM(4, switch="hmm", covariance="full"), ValueError,
     "`covariance`.*HMMSwitch"),
    (lambda: MarkovLSTMCell(4, switch="predictive", task_gradient=False),
     ValueError, "`task_gradient`.*MarkovLSTMCell"),
    (lambda: MarkovLSTM(4, switch=HMMSwitch(), markov_transition=True),
     ValueError, "markov_transition=True"),
    (lambda: MarkovLSTM(4, switch=LinearSwitch(), markov_transition=True),
     ValueError, "LinearSwitch\\(markov_transition=True\\)"),
])
def test_bad_switch_arguments_fail_at_construction(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_markov_transition_given_to_the_switch_and_the_cell_agrees():
    cell = MarkovLSTMCell(
        4, num_states=3, markov_transition=True,
        switch=LinearSwitch(markov_transition=True))
    cell.build((None, 2))
    assert cell.markov_transition
    assert [w.name for w in cell.switch.weights] == [
        "switch_kernel", "switch_recurrent_kernel", "switch_bias",
        "transition_kernel"]


def test_the_switch_is_in_the_public_api():
    assert keras_mrnn.switches is switches
    assert switches.get("hmm").get_config() == HMMSwitch().get_config()
    assert repr(HMMSwitch(order=0)).startswith("HMMSwitch(order=0,")


SAVED_83A3967 = np.load(
    os.path.join(DATA, "markov_lstm_predictions_83a3967.npz"))
CONFIGS_83A3967 = sorted(
    key[:-2] for key in SAVED_83A3967.files if key.endswith("_y"))


@pytest.mark.parametrize("name", CONFIGS_83A3967)
def test_models_saved_before_the_regime_model_had_one_home_predict_the_same(
        name):
    # Saved by main at 83a3967 (tests/data/make_saved_models.py), when the
    # switch's weights were also attributes of the cell.
    assert len(CONFIGS_83A3967) == 9
    model = keras.saving.load_model(
        os.path.join(DATA, f"markov_lstm_{name}_83a3967.keras"))
    y, q = model.predict(SAVED_83A3967["x"], verbose=0)
    np.testing.assert_allclose(y, SAVED_83A3967[f"{name}_y"], **TOL)
    np.testing.assert_allclose(q, SAVED_83A3967[f"{name}_q"], **TOL)


def test_the_switch_is_given_its_size_and_its_weights_have_one_name():
    cell = MarkovLSTMCell(4, num_states=3, switch="hmm")
    switch = cell.switch
    assert switch.num_states is None and switch.input_dim is None
    cell.build((None, 2))
    assert (switch.num_states, switch.input_dim) == (3, 2)
    assert [w.name for w in switch.weights] == [
        "switch_level", "switch_persistence", "switch_log_scale",
        "switch_transition"]
    # Made on the cell (saved and trained with it), reached through the
    # switch only.
    assert all(any(w is v for v in cell.weights) for w in switch.weights)
    assert not hasattr(cell, "switch_level")
