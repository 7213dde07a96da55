"""Keras callbacks for the package's layers."""

import inspect
import math

import keras
import numpy as np

from keras_mrnn import _backend
from keras_mrnn import _validation as check
from keras_mrnn.markov_lstm import MarkovLSTMCell
from keras_mrnn.stateful import evaluate_preserving_states
from keras_mrnn.stateful import iter_layers
from keras_mrnn.stateful import reset_states
from keras_mrnn.stateful import stateful_layers
from keras_mrnn.vrnn import VRNN


def markov_cells(model):
    """Returns every `MarkovLSTMCell` inside a model.

    Looks inside `keras.layers.RNN` layers, `Bidirectional` and other
    wrappers, and nested models.

    Args:
        model: A `keras.Model` or layer.

    Returns:
        A list of `MarkovLSTMCell` instances, each once.

    Example:

    >>> model = keras.Sequential([keras_mrnn.MarkovLSTM(4)])
    >>> len(keras_mrnn.callbacks.markov_cells(model))
    1
    """
    return [
        layer for layer in iter_layers(model)
        if isinstance(layer, MarkovLSTMCell)
    ]


class _ScheduledValue(keras.callbacks.Callback):
    """Sets one non-trainable scalar of some of a model's layers on a
    schedule (private base of `GumbelTemperatureScheduler` and `KLWarmup`).

    The shape follows `keras.callbacks.LearningRateScheduler`: the value for
    a step comes from `schedule(step, value)` (`value`: the value now in
    force on the first layer) or `schedule(step)`, or, without a `schedule`,
    from the subclass's closed form. It is set at the start of each epoch
    (`unit="epoch"`, `step` counted as `fit` counts epochs) or each training
    batch (`unit="batch"`, `step` counting the batches seen across `fit`
    calls), and written to the epoch's logs under `_name`.

    A subclass sets `_name` (the layers' attribute and the logs key),
    `_label` (for verbose lines), `_target_name` (for the error when the
    model has none), `_positive` (value > 0, else >= 0), and implements
    `_targets(model)` and `_closed_form(step)`.
    """

    _name = _label = _target_name = None
    _positive = True

    def __init__(self, schedule, unit, verbose):
        super().__init__()
        if schedule is not None:
            if not callable(schedule):
                raise TypeError(
                    "Argument `schedule` must be a callable "
                    f"`schedule(step)` or `schedule(step, {self._name})`. "
                    f"Received: schedule={schedule!r} of type "
                    f"{type(schedule).__name__}."
                )
            self._takes_value = _accepts_two_arguments(schedule)
        else:
            self._takes_value = False
        self._schedule = schedule
        self.unit = check.choice("unit", unit, ("epoch", "batch"))
        self.verbose = verbose
        self._value = None  # the value last set, in this fit
        self._step = None  # and the step it was computed for
        self._layers = None
        self._batches = 0  # training batches seen before this epoch
        self._epoch_batches = 0  # and in this epoch

    def _closed_form(self, step):
        raise NotImplementedError

    def _targets(self, model):
        raise NotImplementedError

    def schedule(self, step, value=None):
        """The value to set at a step, as the callback computes it.

        Args:
            step: Integer epoch index (0-based), or count of training
                batches with `unit="batch"`.
            value: The value in force, passed on to a `schedule` argument
                that takes two arguments (the callback passes the first
                layer's value); ignored otherwise.

        Returns:
            The value as a Python float.

        Raises:
            TypeError: if the `schedule` argument returns something other
                than a number.
            ValueError: if it returns a non-finite or out-of-range value.
        """
        if self._schedule is None:
            return self._closed_form(step)
        if self._takes_value:
            result = self._schedule(step, value)
        else:
            result = self._schedule(step)
        return self._checked(result, step)

    def _checked(self, result, step):
        when = f"{self.unit} {step} (counted from 0)"
        if isinstance(result, (bool, np.bool_, str, bytes)) or (
            np.ndim(result) != 0
        ):
            number = None
        else:
            try:
                number = float(result)
            except (TypeError, ValueError):
                number = None
        if number is None:
            raise TypeError(
                f"The `schedule` of {type(self).__name__} must return a "
                f"number. Received: {self._name}={result!r} of type "
                f"{type(result).__name__} for {when}."
            )
        valid = number > 0 if self._positive else number >= 0
        if not (valid and math.isfinite(number)):
            kind = "positive" if self._positive else "non-negative"
            raise ValueError(
                f"The `schedule` of {type(self).__name__} must return a "
                f"{kind}, finite {self._label}. Received: "
                f"{self._name}={result!r} for {when}."
            )
        return number

    def _set(self, step):
        # With unit="batch", the step set at train begin comes again at the
        # first batch: a schedule of the value in force must not run twice.
        if step == self._step:
            return
        self._step = step
        # On JAX, mid-epoch, the variables are stale until written back.
        _backend.sync_training_state(self.model)
        if self._takes_value:
            value = self.schedule(step, getattr(self._layers[0], self._name))
        else:
            value = self.schedule(step)
        if value == self._value:
            return
        self._value = value
        for layer in self._layers:
            setattr(layer, self._name, value)

    def on_train_begin(self, logs=None):
        self._layers = self._targets(self.model)
        if not self._layers:
            raise ValueError(
                f"{type(self).__name__} found no {self._target_name} in the "
                f"model '{self.model.name}'."
            )
        self._value = self._step = None
        if self.unit == "batch":
            self._set(self._batches)

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._set(epoch)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: {self._label} {self._value:.4g}.")

    # Keras passes the index of the first and of the last batch of each
    # execution (they differ with steps_per_execution > 1): count from them,
    # not from the number of calls.
    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "batch":
            self._set(self._batches + batch)

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_batches = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        self._batches += self._epoch_batches
        self._epoch_batches = 0
        if logs is not None and self._value is not None:
            logs[self._name] = self._value


def _accepts_two_arguments(schedule):
    """Whether to call `schedule(step, value)` (else `schedule(step)`)."""
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):  # not introspectable: call schedule(step)
        return False
    try:
        signature.bind(0, 0.0)
        return True
    except TypeError:
        pass
    try:
        signature.bind(0)
    except TypeError:
        raise TypeError(
            "Argument `schedule` must accept the step: `schedule(step)` or "
            f"`schedule(step, value)`. Received: schedule={schedule!r} with "
            f"signature {signature}."
        ) from None
    return False


def _closed_form_or_schedule(schedule, **arguments):
    """Refuses closed-form arguments given together with `schedule`."""
    given = {k: v for k, v in arguments.items() if v is not None}
    if schedule is not None and given:
        names = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise ValueError(
            "Pass either `schedule` or the arguments of the built-in "
            f"schedule ({', '.join(arguments)}), not both. Received: "
            f"schedule={schedule!r} and {names}."
        )


class GumbelTemperatureScheduler(_ScheduledValue):
    """Anneals the Gumbel-softmax temperature of every Markov cell per epoch.

    At the start of epoch `e` (counted from 0) sets
    `tau = max(initial * exp(-rate * e), minimum)` on every `MarkovLSTMCell`
    of the model (including inside `Bidirectional` and nested models), as the
    reference implementation does; or, like
    `keras.callbacks.LearningRateScheduler`, the value of your own
    `schedule(e, tau)` (`tau`: the temperature now in force, that of the
    model's first Markov cell) or `schedule(e)`. The temperature is a
    variable read by the compiled train step, so the change takes effect
    without recompiling, also with `jit_compile=True`. The value is written
    to the epoch's logs as `temperature` (and so shows in `History` and
    CSV/TensorBoard loggers).

    Args:
        initial: Positive float, tau at epoch 0 (default, as in the
            reference: 5.0).
        rate: Non-negative float, exponential decay per epoch (default 0.1).
        minimum: Positive float, the floor (default 0.1).
        verbose: If 1, print the temperature at each epoch start.
        schedule: Optional callable, `schedule(epoch, temperature)` (when
            it accepts two positional arguments) or `schedule(epoch)`,
            returning the temperature for the epoch: a positive, finite
            number. Replaces the built-in schedule: do not pass `initial`,
            `rate` or `minimum` with it.

    Example:

    >>> x = np.random.random((16, 10, 3)).astype("float32")
    >>> y = np.random.random((16, 1)).astype("float32")
    >>> model = keras.Sequential([
    ...     keras.Input((10, 3)), keras_mrnn.MarkovLSTM(4),
    ...     keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> history = model.fit(x, y, epochs=2, verbose=0, callbacks=[
    ...     keras_mrnn.callbacks.GumbelTemperatureScheduler(5.0, 0.1, 0.1)])
    >>> [round(t, 3) for t in history.history["temperature"]]
    [5.0, 4.524]

    Your own schedule, here halving the temperature in force at each epoch:

    >>> history = model.fit(x, y, epochs=2, verbose=0, callbacks=[
    ...     keras_mrnn.callbacks.GumbelTemperatureScheduler(
    ...         schedule=lambda epoch, tau: tau / 2)])
    >>> [round(t, 3) for t in history.history["temperature"]]
    [2.262, 1.131]
    """

    _name = "temperature"
    _label = "Gumbel temperature"
    _target_name = "MarkovLSTMCell"
    _positive = True

    def __init__(self, initial=None, rate=None, minimum=None, verbose=0,
                 schedule=None):
        _closed_form_or_schedule(schedule, initial=initial, rate=rate,
                                 minimum=minimum)
        super().__init__(schedule, unit="epoch", verbose=verbose)
        self.initial = self.rate = self.minimum = None
        if schedule is not None:
            return
        self.initial = check.positive_float(
            "initial", 5.0 if initial is None else initial)
        self.rate = check.non_negative_float(
            "rate", 0.1 if rate is None else rate)
        self.minimum = check.positive_float(
            "minimum", 0.1 if minimum is None else minimum)
        if self.minimum > self.initial:
            raise ValueError(
                "Argument `minimum` must not exceed `initial` (the schedule "
                f"would be constant). Received: minimum={self.minimum!r}, "
                f"initial={self.initial!r}."
            )

    @property
    def temperature(self):
        """The temperature last set (`None` before training)."""
        return self._value

    def _closed_form(self, epoch):
        return max(self.initial * math.exp(-self.rate * epoch), self.minimum)

    def _targets(self, model):
        return markov_cells(model)


class KLWarmup(_ScheduledValue):
    """Linear warm-up of the KL weight of every `VRNN` layer of a model.

    Against posterior collapse: the KL term of the negative ELBO starts at
    weight `initial` and grows linearly to `final` over `duration` epochs or
    batches, then stays there. With `unit="epoch"` the weight at epoch `e`
    (counted from 0, as `fit` counts them, so `initial_epoch` is honoured) is
    `initial + (final - initial) * min(e / duration, 1)`; with
    `unit="batch"`, `e` counts the training batches this callback has seen,
    across `fit` calls (with `steps_per_execution=k`, Keras calls callbacks
    once per k batches: the weight is then set for each group of k batches,
    from the count of the group's first batch). Instead of the linear
    warm-up, a `schedule(e, weight)` (`weight`: the weight now in force,
    that of the model's first VRNN layer) or `schedule(e)` of your own gives
    the weight, like `keras.callbacks.LearningRateScheduler` (e.g. a
    cyclical schedule). The weight is a variable read by the compiled train
    step, so the change takes effect without recompiling, also with
    `jit_compile=True`. The value is written to the epoch's logs as
    `kl_weight` (and so shows in `History` and CSV/TensorBoard loggers).

    Args:
        duration: Positive integer, the number of epochs or batches over
            which the weight goes from `initial` to `final`. Needed unless
            `schedule` is given.
        unit: `"epoch"` (default) or `"batch"`: when the weight is set, and
            what `e` counts.
        initial: Non-negative float, the weight at the start (default 0.0).
        final: Non-negative float, the weight after the warm-up (default
            1.0).
        verbose: If 1, print the weight at each epoch start.
        schedule: Optional callable, `schedule(e, kl_weight)` (when it
            accepts two positional arguments) or `schedule(e)`, returning
            the weight: a non-negative, finite number. Replaces the linear
            warm-up: do not pass `duration`, `initial` or `final` with it.

    Example:

    >>> x = np.random.random((16, 10, 3)).astype("float32")
    >>> model = keras.Sequential([
    ...     keras.Input((10, 3)), keras_mrnn.VRNN(8, latent_dim=2)])
    >>> model.compile("adam")
    >>> history = model.fit(x, epochs=3, verbose=0, callbacks=[
    ...     keras_mrnn.callbacks.KLWarmup(2, unit="epoch")])
    >>> [round(w, 2) for w in history.history["kl_weight"]]
    [0.0, 0.5, 1.0]

    A schedule of your own, here cyclical (Fu et al., 2019): warm up over
    2 epochs, hold, start again every 4 epochs:

    >>> history = model.fit(x, epochs=5, verbose=0, callbacks=[
    ...     keras_mrnn.callbacks.KLWarmup(
    ...         schedule=lambda epoch: min((epoch % 4) / 2, 1.0))])
    >>> history.history["kl_weight"]
    [0.0, 0.5, 1.0, 1.0, 0.0]
    """

    _name = "kl_weight"
    _label = "KL weight"
    _target_name = "VRNN layer"
    _positive = False

    def __init__(self, duration=None, unit="epoch", initial=None, final=None,
                 verbose=0, schedule=None):
        _closed_form_or_schedule(schedule, duration=duration,
                                 initial=initial, final=final)
        super().__init__(schedule, unit=unit, verbose=verbose)
        self.duration = self.initial = self.final = None
        if schedule is not None:
            return
        if duration is None:
            raise TypeError(
                "KLWarmup needs `duration` (or a `schedule`). Received: "
                "duration=None."
            )
        self.duration = check.positive_int("duration", duration)
        self.initial = check.non_negative_float(
            "initial", 0.0 if initial is None else initial)
        self.final = check.non_negative_float(
            "final", 1.0 if final is None else final)

    @property
    def kl_weight(self):
        """The KL weight last set (`None` before training)."""
        return self._value

    def _closed_form(self, step):
        fraction = min(max(step, 0) / self.duration, 1.0)
        return self.initial + (self.final - self.initial) * fraction

    def _targets(self, model):
        return [layer for layer in iter_layers(model)
                if isinstance(layer, VRNN)]


class ResetStates(keras.callbacks.Callback):
    """Resets the states of every stateful layer at each epoch's start.

    `fit` never resets the states of stateful layers, and Keras 3 models have
    no `reset_states()`. This callback zeroes the state variables of every
    stateful `keras.layers.RNN` of the model (including inside nested models
    and `Bidirectional`) at the start of every epoch and, with
    `every_n_batches`, also before every `every_n_batches`-th batch (e.g.
    when the training set holds several independent series, each
    `every_n_batches` batches long).

    Args:
        every_n_batches: `None` (default: only at epoch starts) or a positive
            integer N: also reset before batches N, 2N, ... of each epoch.
            With `steps_per_execution=k > 1`, batch callbacks run once per k
            batches, so N must be a multiple of k.
        verbose: If 1, print a line at each reset.

    Example:

    A stateful VRNN over 4 streams of windows of 25 steps, 4 batches an
    epoch, whose streams start again every 2 batches:

    >>> series = np.random.random((400, 1)).astype("float32")
    >>> x = keras_mrnn.stateful.make_stateful_batches(
    ...     series, batch_size=4, window=25)
    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(4, 25, 1)),
    ...     keras_mrnn.VRNN(8, latent_dim=2, stateful=True)])
    >>> model.compile("adam")
    >>> history = model.fit(x, batch_size=4, shuffle=False, verbose=0,
    ...     callbacks=[keras_mrnn.callbacks.ResetStates(every_n_batches=2,
    ...                                                 verbose=1)])
    <BLANKLINE>
    ResetStates: states reset at the start of epoch 1.
    <BLANKLINE>
    ResetStates: states reset before batch 2.
    """

    def __init__(self, every_n_batches=None, verbose=0):
        super().__init__()
        if every_n_batches is not None:
            every_n_batches = check.positive_int(
                "every_n_batches", every_n_batches
            )
        self.every_n_batches = every_n_batches
        self.verbose = verbose
        self.resets = 0

    def _reset(self, where):
        # (On JAX, `reset_states` first writes back the state fit carries.)
        reset_states(self.model)
        self.resets += 1
        if self.verbose:
            print(f"\nResetStates: states reset {where}.")

    def on_train_begin(self, logs=None):
        if not stateful_layers(self.model):
            raise ValueError(
                "ResetStates found no built stateful recurrent layer in the "
                f"model '{self.model.name}'. Build the model (give its Input "
                "a batch size) with stateful=True layers."
            )
        steps = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if self.every_n_batches is not None and self.every_n_batches % steps:
            raise ValueError(
                f"ResetStates(every_n_batches={self.every_n_batches}) needs "
                "a multiple of the model's steps_per_execution "
                f"({steps}): batch callbacks run once per execution."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._reset(f"at the start of epoch {epoch + 1}")

    def on_train_batch_begin(self, batch, logs=None):
        n = self.every_n_batches
        if n is not None and batch > 0 and batch % n == 0:
            self._reset(f"before batch {batch}")


class StatefulEvaluation(keras.callbacks.Callback):
    """Evaluates a stateful model without disturbing its training states.

    Keras's own validation (`fit(validation_data=...)`) advances the same
    state variables that training carries from batch to batch. This callback
    instead, every `every_n_epochs` epochs at the epoch's end: snapshots the
    state variables of every stateful layer, optionally resets them to
    zeros, runs `model.evaluate` on its data, writes the results to the
    epoch's logs as `{prefix}{name}` (so that `History`, `EarlyStopping`,
    `ModelCheckpoint`, CSV and TensorBoard loggers see them) and restores
    the snapshot. Training continues from exactly the states it had. Put it
    before the callbacks that read its logs (e.g. `EarlyStopping`).

    The evaluation data must be laid out for the model's batch size, like
    the training data (see `keras_mrnn.stateful.make_stateful_batches`).
    Only the state variables are restored: a layer that samples at inference
    (e.g. `inference_switch="sample"`) advances its random generator.

    Args:
        x: Inputs of `model.evaluate` (arrays or a `tf.data.Dataset`).
        y: Targets, or `None`.
        batch_size: The batch size for array inputs. `None` (default):
            for arrays, the batch size of the model's stateful layers times
            the number of replicas of the model's `tf.distribute` strategy
            (the global batch that `evaluate` needs; its own default of 32
            would be refused by the stateful batch guard), nothing for
            datasets.
        reset_states: If `True` (default), evaluate from zero states (the
            evaluation data is a fresh sequence); if `False`, from the
            current training states (it continues the training sequences).
        prefix: String prepended to the metric names in the logs
            (`"val_"`).
        every_n_epochs: Positive integer, evaluate every this many epochs.
        verbose: Verbosity of `model.evaluate`.

    Example:

    >>> series_x = np.random.random((1200, 1)).astype("float32")
    >>> series_y = np.random.random((1200, 1)).astype("float32")
    >>> x, y = keras_mrnn.stateful.make_stateful_batches(
    ...     series_x[:800], series_y[:800], batch_size=4, window=50)
    >>> x_val, y_val = keras_mrnn.stateful.make_stateful_batches(
    ...     series_x[800:], series_y[800:], batch_size=4, window=50)
    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(4, 50, 1)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True, return_sequences=True),
    ...     keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> history = model.fit(
    ...     x, y, batch_size=4, shuffle=False, epochs=2, verbose=0,
    ...     callbacks=[
    ...         keras_mrnn.callbacks.StatefulEvaluation(x_val, y_val,
    ...                                                 batch_size=4),
    ...         keras.callbacks.EarlyStopping("val_loss", patience=2)])
    >>> sorted(history.history)
    ['loss', 'val_loss']
    """

    def __init__(self, x, y=None, batch_size=None, reset_states=True,
                 prefix="val_", every_n_epochs=1, verbose=0):
        super().__init__()
        if x is None:
            raise ValueError(
                "StatefulEvaluation needs evaluation data. Received: x=None."
            )
        if not isinstance(prefix, str):
            raise TypeError(
                "Argument `prefix` must be a string. Received: "
                f"prefix={prefix!r} of type {type(prefix).__name__}."
            )
        if batch_size is not None:
            batch_size = check.positive_int("batch_size", batch_size)
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.reset_states = bool(reset_states)
        self.prefix = prefix
        self.every_n_epochs = check.positive_int(
            "every_n_epochs", every_n_epochs
        )
        self.verbose = verbose
        self.results = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        batch_size = self.batch_size
        layers = stateful_layers(self.model)
        if batch_size is None and layers and not _backend.is_tf_dataset(
            self.x
        ):
            # Each replica holds its own state rows, and `evaluate` splits
            # a global batch between the replicas.
            batch_size = (
                int(layers[0].states[0].shape[0])
                * _backend.model_replicas(self.model)
            )
        self.results = evaluate_preserving_states(
            self.model, self.x, self.y, batch_size=batch_size,
            reset=self.reset_states, verbose=self.verbose, return_dict=True,
        )
        if logs is not None:
            for name, value in self.results.items():
                logs[f"{self.prefix}{name}"] = float(value)
