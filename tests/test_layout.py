"""The packed per-step output layout (`keras_mrnn/_packed.py`) and the cells'
layouts derived from it (issue 11: one description per cell)."""

import doctest

import numpy as np
import pytest
from keras import ops

import keras_mrnn
from keras_mrnn import _packed
from keras_mrnn._packed import SCALAR
from keras_mrnn._packed import PackedLayout


def test_docstring_examples_run():
    result = doctest.testmod(_packed, extraglobs={"ops": ops})
    assert result.attempted > 0 and result.failed == 0


def test_pack_and_unpack_are_inverse():
    layout = PackedLayout([("a", 2), ("s", SCALAR), ("b", 3)])
    assert layout.size == 6
    assert layout.names == ("a", "s", "b")
    rng = np.random.default_rng(0)
    parts = {"a": rng.normal(size=(4, 5, 2)), "s": rng.normal(size=(4, 5)),
             "b": rng.normal(size=(4, 5, 3)), "ignored": np.zeros(1)}
    packed = layout.pack(parts, dtype="float32")
    assert tuple(packed.shape) == (4, 5, 6)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(packed[..., 2]), parts["s"].astype("float32"))
    unpacked = layout.unpack(packed)
    assert list(unpacked) == ["a", "s", "b"]
    for name in layout.names:
        np.testing.assert_array_equal(
            ops.convert_to_numpy(unpacked[name]),
            parts[name].astype("float32"))


def test_a_single_field_is_the_tensor_itself():
    layout = PackedLayout([("h", 3)])
    h = ops.ones((2, 3))
    assert layout.pack({"h": h}) is h
    assert layout.unpack(h)["h"] is h


def test_a_missing_field_fails():
    with pytest.raises(KeyError):
        PackedLayout([("a", 1), ("b", 1)]).pack({"a": ops.ones((2, 1))})


@pytest.mark.parametrize("switch", ["linear", "predictive"])
def test_markov_cell_output_is_its_layout(switch):
    cell = keras_mrnn.MarkovLSTMCell(
        5, num_states=3, switch=switch, output_switches=True, seed=0)
    layout = cell._output_layout()
    expected = ["h", "logits", "z"] + (
        ["log_evidence"] if switch == "predictive" else [])
    assert list(layout.names) == expected
    assert cell.output_size == layout.size == 5 + 6 + (switch == "predictive")
    x = np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
    output, _ = cell(x, cell.get_initial_state(batch_size=4))
    parts = layout.unpack(output)
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.sum(parts["z"], axis=-1)), 1.0, rtol=1e-6)
    plain = keras_mrnn.MarkovLSTMCell(5, num_states=3)
    assert plain.output_size == 5


@pytest.mark.parametrize("likelihood, decoder", [
    ("gaussian", ["x_loc", "x_scale"]), ("bernoulli", ["x_logits"])])
def test_vrnn_cell_output_is_its_layout(likelihood, decoder):
    cell = keras_mrnn.VRNNCell(
        6, latent_dim=2, likelihood=likelihood, packed_output=True, seed=0)
    assert cell.output_size is None  # unknown before the features are
    cell.build((None, 3))
    names = ["h", "kl", "nll", "z", "prior_loc", "prior_scale",
             "posterior_loc", "posterior_scale"] + decoder
    assert list(cell._packed_layout(3).names) == names
    assert cell.output_size == cell.packed_size(3) == (
        6 + 2 + 5 * 2 + len(decoder) * 3)
    assert cell.decoder_size(3) == len(decoder) * 3
    x = np.random.default_rng(0).random(size=(4, 3)).astype("float32")
    output, _ = cell(x, cell.get_initial_state(batch_size=4))
    parts = cell.unpack(output)
    assert list(parts) == names
    assert tuple(parts["kl"].shape) == (4,)
    assert tuple(parts["z"].shape) == (4, 2)
