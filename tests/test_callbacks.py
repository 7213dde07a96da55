"""Tests of keras_mrnn.callbacks: the Gumbel temperature and KL weight
schedules (built in, and the `schedule` argument) set inside compiled fit
steps, ResetStates, and StatefulEvaluation (also under MirroredStrategy,
in a subprocess: see tests/_mirrored_training.py)."""

import math

import numpy as np
import pytest
import keras

import keras_mrnn
from _helpers import (
    B, BACKEND, F, MIRRORED_TRAINING, T, last_json_line, run_python,
    state_arrays, stateful_data, stateful_model, stateful_test_layer,
    slow, tensorflow_only,
)
from keras_mrnn import MarkovLSTM, MarkovLSTMCell, stateful
from keras_mrnn.callbacks import (
    GumbelTemperatureScheduler, KLWarmup, ResetStates, StatefulEvaluation,
    markov_cells,
)

# The stateful models' fit is jitted on JAX: without jit, JAX's fit runs
# its step op by op and compiles every lax.scan again, ~6 s a batch on a
# 2-core CPU. TensorFlow keeps its tf.function without XLA, as before;
# PyTorch runs eagerly either way.
STATEFUL_JIT = BACKEND == "jax"


def sync(model):
    """Before a probe reads a model's variables in the middle of fit: on
    JAX, fit carries their values in its own state between its jitted
    steps (the variables themselves are emptied); this writes them back,
    as the package's callbacks do. A no-op elsewhere."""
    if BACKEND == "jax":
        model.jax_state_sync()


# ------------------------------------------------- Gumbel temperature
@pytest.mark.parametrize("jit_compile", [
    pytest.param(False, marks=pytest.mark.skipif(
        BACKEND == "jax",
        reason="on JAX jit_compile=False runs fit's step op by op, not "
        "compiled; jit_compile=True is JAX's compiled step")),
    True,
])
def test_scheduler_changes_temperature_inside_compiled_fit(jit_compile):
    rng = np.random.default_rng(19)
    x = rng.normal(size=(16, 5, 2)).astype("float32")
    y = rng.integers(0, 2, size=(16, 1)).astype("float32")
    model = keras.Sequential([
        keras.Input((5, 2)),
        keras.layers.Bidirectional(MarkovLSTM(4, num_states=3)),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            sync(model)
            seen.append([c._temperature.numpy()
                         for c in keras_mrnn.callbacks.markov_cells(model)])

    model.compile("adam", "binary_crossentropy", jit_compile=jit_compile)
    scheduler = keras_mrnn.callbacks.GumbelTemperatureScheduler(
        initial=5.0, rate=0.8, minimum=1.0)
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0,
                        callbacks=[scheduler, Probe()])
    want = [max(5.0 * np.exp(-0.8 * e), 1.0) for e in range(4)]
    assert want[-2] > 1.0 and want[-1] == 1.0  # the floor is reached
    np.testing.assert_allclose(history.history["temperature"], want,
                               rtol=1e-6)
    assert len(keras_mrnn.callbacks.markov_cells(model)) == 2
    np.testing.assert_allclose(np.array(seen), np.repeat(
        np.array(want)[:, None], 2, axis=1), rtol=1e-6)


def test_scheduler_reaches_nested_models():
    if BACKEND == "jax":
        # A bare cell in keras.layers.RNN refuses to draw its training noise
        # inside JAX's scan (its seed generator cannot advance there):
        # MarkovLSTM is the layer for JAX.
        recurrent = MarkovLSTM(3)
    else:
        recurrent = keras.layers.RNN(MarkovLSTMCell(3))
    inner = keras.Sequential([keras.Input((5, 2)), recurrent])
    outer = keras.Sequential([keras.Input((5, 2)), inner,
                              keras.layers.Dense(1)])
    outer.compile("sgd", "mse")
    outer.fit(np.zeros((4, 5, 2)), np.zeros((4, 1)), epochs=2, verbose=0,
              callbacks=[keras_mrnn.callbacks.GumbelTemperatureScheduler(
                  2.0, 1.0, 0.5)])
    assert inner.layers[0].cell.temperature == pytest.approx(
        max(2.0 * np.exp(-1.0), 0.5))


def test_scheduler_without_markov_cells_is_an_error():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="no MarkovLSTMCell"):
        model.fit(np.zeros((2, 3)), np.zeros((2, 1)), verbose=0,
                  callbacks=[GumbelTemperatureScheduler()])


def test_scheduler_minimum_must_not_exceed_initial():
    with pytest.raises(ValueError, match="minimum=1.0"):
        keras_mrnn.callbacks.GumbelTemperatureScheduler(0.5, minimum=1.0)


@pytest.mark.parametrize("args, kwargs, initial, rate, minimum", [
    ((), {}, 5.0, 0.1, 0.1),
    ((2.0, 0.5, 0.3), {}, 2.0, 0.5, 0.3),
    ((3.0,), dict(minimum=0.5), 3.0, 0.1, 0.5),
    ((), dict(initial=1.0, rate=0.0, minimum=1.0), 1.0, 0.0, 1.0),
])
def test_scheduler_arguments_give_the_closed_form(
        args, kwargs, initial, rate, minimum):
    scheduler = GumbelTemperatureScheduler(*args, **kwargs)
    assert (scheduler.initial, scheduler.rate, scheduler.minimum) == (
        initial, rate, minimum)
    for epoch in range(100):
        assert scheduler.schedule(epoch) == pytest.approx(
            max(initial * math.exp(-rate * epoch), minimum), rel=1e-12)


def test_scheduler_defaults_in_fit_log_and_print(capsys):
    model = keras.Sequential([keras.Input((5, 2)), MarkovLSTM(3, seed=0),
                              keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(
        np.zeros((4, 5, 2)), np.zeros((4, 1)), epochs=3, verbose=0,
        callbacks=[GumbelTemperatureScheduler(verbose=1)])
    want = [5.0 * math.exp(-0.1 * epoch) for epoch in range(3)]
    assert history.history["temperature"] == pytest.approx(want, rel=1e-12)
    assert model.layers[0].temperature == pytest.approx(want[-1], rel=1e-6)
    printed = capsys.readouterr().out
    assert "Epoch 1: Gumbel temperature 5." in printed
    assert "Epoch 3: Gumbel temperature 4.094." in printed


# ------------------------------------------------------------ KL weight
def test_kl_warmup_changes_the_weight_inside_an_xla_step():
    x = np.random.RandomState(12).normal(size=(8, 5, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    layer = keras_mrnn.VRNN(4, latent_dim=2, seed=0, name="vrnn")
    model = keras.Sequential([keras.Input((5, 2)), layer])
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=True)
    history = model.fit(
        x, epochs=3, batch_size=8, verbose=0,
        callbacks=[KLWarmup(2, unit="epoch", initial=0.0, final=1.0)],
    ).history
    assert history["kl_weight"] == [0.0, 0.5, 1.0]
    kl, nll = np.array(history["vrnn_kl"]), np.array(history["vrnn_nll"])
    # The loss seen by the optimizer is NLL + w * KL, w read in the XLA step.
    np.testing.assert_allclose(
        history["loss"], nll + np.array(history["kl_weight"]) * kl,
        rtol=1e-4, atol=1e-5)
    assert kl[0] > 1e-3
    assert layer.kl_weight == 1.0


@pytest.mark.parametrize("steps_per_execution", [
    1,
    pytest.param(2, marks=pytest.mark.skipif(
        BACKEND == "torch",
        reason="Keras's PyTorch trainer refuses steps_per_execution > 1")),
])
def test_kl_warmup_per_batch_counts_batches_not_callback_calls(
    steps_per_execution,
):
    x = np.random.RandomState(3).normal(size=(16, 4, 2)).astype("float32")
    layer = keras_mrnn.VRNN(4, latent_dim=2, seed=0, name="vrnn")
    model = keras.Sequential([keras.Input((4, 2)), layer])
    model.compile("adam", steps_per_execution=steps_per_execution)
    warmup = KLWarmup(8, unit="batch")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(layer.kl_weight)

    # 4 batches per epoch; 2 epochs, then a second fit of 1 epoch.
    callbacks = [warmup, Record()]
    model.fit(x, batch_size=4, epochs=2, verbose=0, callbacks=callbacks)
    model.fit(x, batch_size=4, epochs=1, verbose=0, callbacks=callbacks)
    batches = np.arange(0, 12, steps_per_execution)
    np.testing.assert_allclose(seen, np.minimum(batches / 8, 1.0))


def test_kl_warmup_per_batch_schedule_and_errors():
    warmup = KLWarmup(4, unit="batch", initial=0.2, final=1.0)
    assert [warmup.schedule(s) for s in range(6)] == pytest.approx(
        [0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Dense(1)])
    warmup.set_model(model)
    with pytest.raises(ValueError, match="no VRNN"):
        warmup.on_train_begin()
    with pytest.raises(ValueError, match="duration=0"):
        KLWarmup(0)
    with pytest.raises(ValueError, match="unit='step'"):
        KLWarmup(3, unit="step")
    with pytest.raises(ValueError, match="initial=-1"):
        KLWarmup(3, initial=-1.0)


@pytest.mark.parametrize("args, kwargs, duration, initial, final", [
    ((3,), {}, 3, 0.0, 1.0),
    ((4,), dict(unit="batch", initial=0.2), 4, 0.2, 1.0),
    ((2, "epoch", 1.0, 0.25), {}, 2, 1.0, 0.25),  # a cool-down
])
def test_kl_warmup_arguments_give_the_closed_form(
        args, kwargs, duration, initial, final):
    warmup = KLWarmup(*args, **kwargs)
    assert (warmup.duration, warmup.initial, warmup.final) == (
        duration, initial, final)
    for step in range(-2, 12):
        fraction = min(max(step, 0) / duration, 1.0)
        assert warmup.schedule(step) == pytest.approx(
            initial + (final - initial) * fraction, rel=1e-12, abs=1e-15)


# ------------------------------------------------ the schedule argument
def two_layer_markov_model():
    """Two Markov cells (a Bidirectional layer) of temperature 2.0."""
    model = keras.Sequential([
        keras.Input((5, 2)),
        keras.layers.Bidirectional(
            MarkovLSTM(4, num_states=3, temperature=2.0, seed=0)),
        keras.layers.Dense(1),
    ])
    model.compile("sgd", "mse")
    return model


def two_layer_vrnn_model():
    """Two stacked VRNN layers of KL weight 1.0."""
    model = keras.Sequential([
        keras.Input((5, 2)),
        keras_mrnn.VRNN(4, latent_dim=2, seed=0, return_sequences=True),
        keras_mrnn.VRNN(4, latent_dim=2, seed=1),
    ])
    model.compile("sgd")
    return model


def vrnn_layers(model):
    return [layer for layer in model.layers
            if isinstance(layer, keras_mrnn.VRNN)]


@pytest.mark.parametrize("takes_value", [False, True])
def test_temperature_schedule_reaches_every_cell_epoch_by_epoch(takes_value):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5, 2)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    model = two_layer_markov_model()
    calls = []
    if takes_value:
        def schedule(epoch, temperature):
            calls.append((epoch, temperature))
            return temperature / 2
        want = [1.0, 0.5, 0.25]
        want_calls = [(0, 2.0), (1, 1.0), (2, 0.5)]
    else:
        want = [3.0, 0.7, 1.5]  # not a closed form

        def schedule(epoch):
            calls.append((epoch,))
            return want[epoch]
        want_calls = [(0,), (1,), (2,)]
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            sync(model)
            seen.append([c.temperature for c in markov_cells(model)])

    history = model.fit(
        x, y, epochs=3, batch_size=8, verbose=0,
        callbacks=[GumbelTemperatureScheduler(schedule=schedule), Probe()])
    assert calls == [pytest.approx(c) for c in want_calls]
    assert history.history["temperature"] == pytest.approx(want)
    # 2 batches an epoch, 2 cells: the values the compiled steps read.
    assert len(markov_cells(model)) == 2
    np.testing.assert_allclose(
        seen, np.repeat(np.array(want), 2)[:, None].repeat(2, axis=1),
        rtol=1e-6)


@pytest.mark.parametrize("unit", ["epoch", "batch"])
def test_kl_schedule_reaches_every_layer_step_by_step(unit):
    x = np.random.default_rng(1).normal(size=(12, 5, 2)).astype("float32")
    model = two_layer_vrnn_model()
    layers = vrnn_layers(model)
    calls = []

    def schedule(step, kl_weight):
        calls.append((step, kl_weight))
        return 0.3 * step

    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            sync(model)
            seen.append([layer.kl_weight for layer in layers])

    # 3 batches an epoch, 2 epochs.
    history = model.fit(
        x, epochs=2, batch_size=4, verbose=0,
        callbacks=[KLWarmup(unit=unit, schedule=schedule), Probe()])
    steps = 2 if unit == "epoch" else 6
    want = [0.3 * step for step in range(steps)]
    # The weight in force is passed on: 1.0 (the layers' own), then the
    # previous step's.
    assert calls == [(s, pytest.approx(w)) for s, w in
                     zip(range(steps), [1.0] + want[:-1])]
    per_batch = np.repeat(want, 3) if unit == "epoch" else np.array(want)
    np.testing.assert_allclose(seen, per_batch[:, None].repeat(2, axis=1),
                               rtol=1e-6)
    # The logs hold the weight of each epoch's last batch.
    assert history.history["kl_weight"] == pytest.approx(per_batch[2::3])


@pytest.mark.parametrize("callback", [GumbelTemperatureScheduler, KLWarmup])
def test_schedule_must_be_a_callable_of_the_step(callback):
    with pytest.raises(TypeError, match="`schedule`.*schedule=0.5"):
        callback(schedule=0.5)
    with pytest.raises(TypeError, match="must accept the step"):
        callback(schedule=lambda: 1.0)
    with pytest.raises(TypeError, match="must accept the step"):
        callback(schedule=lambda a, b, c: 1.0)


def test_schedule_or_the_built_in_arguments_not_both():
    with pytest.raises(ValueError, match="not both.*initial=2.0"):
        GumbelTemperatureScheduler(2.0, schedule=lambda epoch: 1.0)
    with pytest.raises(ValueError, match="not both.*minimum=0.5"):
        GumbelTemperatureScheduler(minimum=0.5, schedule=lambda epoch: 1.0)
    with pytest.raises(ValueError, match="not both.*duration=3"):
        KLWarmup(3, schedule=lambda epoch: 1.0)
    with pytest.raises(ValueError, match="not both.*final=0.5"):
        KLWarmup(final=0.5, schedule=lambda epoch: 1.0)
    with pytest.raises(TypeError, match="needs `duration`"):
        KLWarmup()
    # unit and verbose go with a schedule.
    KLWarmup(unit="batch", verbose=1, schedule=lambda step: 1.0)


OUT_OF_RANGE = [("temperature", v) for v in (0.0, -1.0, math.nan, math.inf)]
OUT_OF_RANGE += [("kl_weight", v) for v in (-0.5, math.nan, -math.inf)]


@pytest.mark.parametrize("name, value", OUT_OF_RANGE)
def test_schedule_out_of_range_names_value_and_step(name, value):
    """A bad value at step 2 of a temperature schedule per epoch, or of a
    KL weight schedule per batch: refused before it reaches the layers."""
    def schedule(step):
        return 1.5 if step < 2 else value

    if name == "temperature":
        model = two_layer_markov_model()
        layers, unit = markov_cells(model), "epoch"
        callback = GumbelTemperatureScheduler(schedule=schedule)
        begin = callback.on_epoch_begin
    else:
        model = two_layer_vrnn_model()
        layers, unit = vrnn_layers(model), "batch"
        callback = KLWarmup(unit="batch", schedule=schedule)
        begin = callback.on_train_batch_begin
    callback.set_model(model)
    callback.on_train_begin()
    begin(1)
    with pytest.raises(ValueError, match=rf"{name}={value!r} for {unit} 2 "
                       r"\(counted from 0\)"):
        begin(2)
    # The layers keep the last good value.
    assert [getattr(layer, name) for layer in layers] == [1.5, 1.5]


@pytest.mark.parametrize("value", [None, "1.0", [1.0], True, np.True_])
def test_schedule_returning_no_number_is_a_type_error(value):
    model = two_layer_markov_model()
    callback = GumbelTemperatureScheduler(schedule=lambda epoch: value)
    callback.set_model(model)
    callback.on_train_begin()
    with pytest.raises(TypeError, match="must return a number.*epoch 0"):
        callback.on_epoch_begin(0)


def test_bad_schedule_value_stops_fit():
    model = two_layer_vrnn_model()
    with pytest.raises(ValueError, match="kl_weight=-0.1 for epoch 1"):
        model.fit(np.zeros((4, 5, 2), "float32"), epochs=3, verbose=0,
                  callbacks=[KLWarmup(schedule=lambda e: [0.5, -0.1][e])])
    assert [layer.kl_weight for layer in vrnn_layers(model)] == [0.5, 0.5]


def test_schedule_accepts_numpy_and_tensor_scalars():
    model = two_layer_markov_model()
    for value in (np.float32(0.5), np.array(0.25), keras.ops.array(0.125)):
        callback = GumbelTemperatureScheduler(schedule=lambda e: value)
        callback.set_model(model)
        callback.on_train_begin()
        callback.on_epoch_begin(0)
        assert callback.temperature == pytest.approx(float(value))
        assert isinstance(callback.temperature, float)


# ---------------------------------------------------------- ResetStates
class StateProbe(keras.callbacks.Callback):
    """Records, at each batch start, whether all states are zero."""

    def __init__(self):
        super().__init__()
        self.zero = []

    def on_train_batch_begin(self, batch, logs=None):
        self.zero.append(
            all(np.abs(s).sum() == 0 for s in stateful.get_states(self.model))
        )


def test_reset_states_callback_every_epoch_and_every_n_batches():
    model = stateful_model("markov", jit_compile=STATEFUL_JIT)
    x, y = stateful_data(6 * B)  # 6 batches per epoch
    probe = StateProbe()
    model.fit(x, y, batch_size=B, epochs=2, shuffle=False, verbose=0,
              callbacks=[ResetStates(every_n_batches=2), probe])
    assert probe.zero == [True, False] * 3 * 2

    probe = StateProbe()
    model.fit(x, y, batch_size=B, epochs=2, shuffle=False, verbose=0,
              callbacks=[ResetStates(), probe])
    assert probe.zero == ([True] + [False] * 5) * 2

    probe = StateProbe()  # without the callback, nothing resets (Keras)
    model.fit(x, y, batch_size=B, epochs=1, shuffle=False, verbose=0,
              callbacks=[probe])
    assert probe.zero == [False] * 6


def test_reset_states_callback_rejects_bad_arguments():
    with pytest.raises(TypeError, match="every_n_batches=1.5"):
        ResetStates(every_n_batches=1.5)
    with pytest.raises(ValueError, match="every_n_batches=0"):
        ResetStates(every_n_batches=0)
    plain = keras.Sequential(
        [keras.Input((T, F)), stateful_test_layer("markov")])
    plain.compile("adam", "mse")
    x, _ = stateful_data(B)
    with pytest.raises(ValueError, match="no built stateful"):
        plain.fit(x, np.zeros((B, 6)), verbose=0, callbacks=[ResetStates()])
    if BACKEND == "torch":
        return  # Keras's PyTorch trainer refuses steps_per_execution > 1.
    model = stateful_model("markov", jit_compile=STATEFUL_JIT)
    model.compile("adam", "mse", steps_per_execution=2,
                  jit_compile=STATEFUL_JIT)
    with pytest.raises(ValueError, match="multiple of .*steps_per_execution"):
        model.fit(x, np.zeros((B, 1)), batch_size=B, verbose=0,
                  callbacks=[ResetStates(every_n_batches=3)])


# --------------------------------------------------- StatefulEvaluation
def test_stateful_evaluation_does_not_disturb_training():
    """Training with StatefulEvaluation gives exactly the weights and states
    of training without it (a plain evaluate, as run by Keras's
    validation_data, moves them), and its val_loss is the loss of an
    evaluation from zero states."""
    x, y = stateful_data(2 * B, seed=0)
    x_val, y_val = stateful_data(2 * B, seed=1)
    fit = dict(batch_size=B, epochs=2, shuffle=False, verbose=0)

    plain = stateful_model("markov", jit_compile=STATEFUL_JIT)
    plain.fit(x, y, **fit)
    evaluated = stateful_model("markov", jit_compile=STATEFUL_JIT)
    callback = StatefulEvaluation(x_val, y_val, batch_size=B)
    history = evaluated.fit(x, y, callbacks=[callback], **fit)

    for a, b in zip(plain.get_weights(), evaluated.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(state_arrays(plain), state_arrays(evaluated)):
        np.testing.assert_array_equal(a, b)
    # A plain evaluate (what fit's validation_data runs) moves the states.
    plain.evaluate(x_val, y_val, batch_size=B, verbose=0)
    assert any(
        not np.allclose(a, b)
        for a, b in zip(state_arrays(plain), state_arrays(evaluated))
    )
    assert len(history.history["val_loss"]) == 2
    before = state_arrays(evaluated)
    loss = stateful.evaluate_preserving_states(
        evaluated, x_val, y_val, batch_size=B, verbose=0
    )
    np.testing.assert_allclose(history.history["val_loss"][-1], loss,
                               rtol=1e-6)
    for a, b in zip(state_arrays(evaluated), before):
        np.testing.assert_array_equal(a, b)
    keras_mrnn.reset_states(evaluated)
    np.testing.assert_allclose(
        evaluated.evaluate(x_val, y_val, batch_size=B, verbose=0), loss,
        rtol=1e-6,
    )


def test_stateful_evaluation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="x=None"):
        StatefulEvaluation(None)
    with pytest.raises(TypeError, match="prefix=3"):
        StatefulEvaluation(np.zeros(3), prefix=3)
    with pytest.raises(ValueError, match="every_n_epochs=0"):
        StatefulEvaluation(np.zeros(3), every_n_epochs=0)


def test_stateful_evaluation_defaults_to_the_stateful_batch_size():
    """Without batch_size, arrays are evaluated in batches of the model's
    stateful batch size (evaluate's default of 32 would trip the guard)."""
    x, y = stateful_data(2 * B, seed=0)
    x_val, y_val = stateful_data(2 * B, seed=1)
    model = stateful_model("markov", jit_compile=STATEFUL_JIT)
    callback = StatefulEvaluation(x_val, y_val)
    history = model.fit(x, y, batch_size=B, epochs=1, shuffle=False,
                        verbose=0, callbacks=[callback])
    loss = stateful.evaluate_preserving_states(
        model, x_val, y_val, batch_size=B, verbose=0)
    np.testing.assert_allclose(history.history["val_loss"][-1], loss,
                               rtol=1e-6)


@slow
@tensorflow_only(
    "tf.distribute's MirroredStrategy (per-replica state rows, in a "
    "TensorFlow subprocess); on every backend test_stateful_evaluation_"
    "defaults_to_the_stateful_batch_size checks the default on one device")
def test_stateful_evaluation_default_batch_size_under_mirrored_strategy():
    # Each replica holds its own state rows, and `evaluate` takes a global
    # batch: the default batch size must be rows x replicas, or the
    # stateful batch guard refuses every batch (issue 11, bug 2).
    results = last_json_line(run_python(
        MIRRORED_TRAINING, "stateful_evaluation", timeout=400).stdout)
    assert results["replicas"] == 2
    assert "error" not in results, results["error"]
    # The callback evaluated every sample from zero states: the same loss as
    # one device holding all 16 rows, with the same weights. Only the
    # float32 reduction order differs (mean of 2 replicas' sums over ~16
    # terms): relative 1e-5 is ~100 ulps.
    single = results["single_val_loss"]
    assert abs(results["val_loss"] - single) <= 1e-5 * abs(single), results
