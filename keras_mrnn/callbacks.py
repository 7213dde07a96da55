"""Keras callbacks for the package's layers."""

import math

import keras
import tensorflow as tf

from keras_mrnn import _validation as check
from keras_mrnn.stateful import iter_layers


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
    from keras_mrnn.markov_lstm import MarkovLSTMCell

    return [
        layer for layer in iter_layers(model)
        if isinstance(layer, MarkovLSTMCell)
    ]


class GumbelTemperatureScheduler(keras.callbacks.Callback):
    """Anneals the Gumbel-softmax temperature of every Markov cell per epoch.

    At the start of epoch `e` (counted from 0) sets
    `tau = max(initial * exp(-rate * e), minimum)` on every `MarkovLSTMCell`
    of the model (including inside `Bidirectional` and nested models), as the
    reference implementation does. The temperature is a variable read by the
    compiled train step, so the change takes effect without recompiling,
    also with `jit_compile=True`. The value is written to the epoch's logs as
    `temperature` (and so shows in `History` and CSV/TensorBoard loggers).

    Args:
        initial: Positive float, tau at epoch 0 (reference: 5.0).
        rate: Non-negative float, exponential decay per epoch (0.1).
        minimum: Positive float, the floor (0.1).
        verbose: If 1, print the temperature at each epoch start.

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
    """

    def __init__(self, initial=5.0, rate=0.1, minimum=0.1, verbose=0):
        super().__init__()
        self.initial = check.positive_float("initial", initial)
        self.rate = check.non_negative_float("rate", rate)
        self.minimum = check.positive_float("minimum", minimum)
        if self.minimum > self.initial:
            raise ValueError(
                "Argument `minimum` must not exceed `initial` (the schedule "
                f"would be constant). Received: minimum={minimum!r}, "
                f"initial={initial!r}."
            )
        self.verbose = verbose
        self.temperature = None

    def schedule(self, epoch):
        """The temperature for a given epoch (0-based).

        Args:
            epoch: Integer epoch index.

        Returns:
            The temperature as a Python float.
        """
        return max(self.initial * math.exp(-self.rate * epoch), self.minimum)

    def on_epoch_begin(self, epoch, logs=None):
        cells = markov_cells(self.model)
        if not cells:
            raise ValueError(
                "GumbelTemperatureScheduler found no MarkovLSTMCell in the "
                f"model '{self.model.name}'."
            )
        self.temperature = self.schedule(epoch)
        for cell in cells:
            cell.temperature = self.temperature
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: Gumbel temperature "
                  f"{self.temperature:.4g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.temperature is not None:
            logs["temperature"] = self.temperature


class KLWarmup(keras.callbacks.Callback):
    """Linear warm-up of the KL weight of every `VRNN` layer of a model.

    Against posterior collapse: the KL term of the negative ELBO starts at
    weight `initial` and grows linearly to `final` over `duration` epochs or
    batches, then stays there. With `unit="epoch"` the weight at epoch `e`
    (counted from 0, as `fit` counts them, so `initial_epoch` is honoured) is
    `initial + (final - initial) * min(e / duration, 1)`; with
    `unit="batch"`, `e` counts the training batches this callback has seen,
    across `fit` calls (with `steps_per_execution=k`, Keras calls callbacks
    once per k batches: the weight is then set for each group of k batches,
    from the count of the group's first batch). The weight is a variable
    read by the compiled train step, so the change takes effect without
    recompiling, also with `jit_compile=True`. The value is written to the
    epoch's logs as `kl_weight` (and so shows in `History` and CSV/TensorBoard
    loggers).

    Args:
        duration: Positive integer, the number of epochs or batches over
            which the weight goes from `initial` to `final`.
        unit: `"epoch"` (default) or `"batch"`.
        initial: Non-negative float, the weight at the start (0.0).
        final: Non-negative float, the weight after the warm-up (1.0).
        verbose: If 1, print the weight at each epoch start.

    Example:

    >>> x = np.random.random((16, 10, 3)).astype("float32")
    >>> model = keras.Sequential([
    ...     keras.Input((10, 3)), keras_mrnn.VRNN(8, latent_dim=2)])
    >>> model.compile("adam")
    >>> history = model.fit(x, epochs=3, verbose=0, callbacks=[
    ...     keras_mrnn.callbacks.KLWarmup(2, unit="epoch")])
    >>> [round(w, 2) for w in history.history["kl_weight"]]
    [0.0, 0.5, 1.0]
    """

    def __init__(self, duration, unit="epoch", initial=0.0, final=1.0,
                 verbose=0):
        super().__init__()
        self.duration = check.positive_int("duration", duration)
        self.unit = check.choice("unit", unit, ("epoch", "batch"))
        self.initial = check.non_negative_float("initial", initial)
        self.final = check.non_negative_float("final", final)
        self.verbose = verbose
        self.kl_weight = None
        self._batches = 0  # training batches seen before this epoch
        self._epoch_batches = 0  # and in this epoch
        self._layers = None

    def schedule(self, step):
        """The KL weight after `step` epochs or batches (0-based).

        Args:
            step: Integer count of epochs or batches.

        Returns:
            The weight as a Python float.
        """
        fraction = min(max(step, 0) / self.duration, 1.0)
        return self.initial + (self.final - self.initial) * fraction

    def _set(self, value):
        if value == self.kl_weight:
            return
        self.kl_weight = value
        for layer in self._layers:
            layer.kl_weight = value

    def on_train_begin(self, logs=None):
        from keras_mrnn.vrnn import VRNN

        self._layers = [
            layer for layer in iter_layers(self.model)
            if isinstance(layer, VRNN)
        ]
        if not self._layers:
            raise ValueError(
                f"KLWarmup found no VRNN layer in the model "
                f"'{self.model.name}'."
            )
        self.kl_weight = None
        if self.unit == "batch":
            self._set(self.schedule(self._batches))

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._set(self.schedule(epoch))
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: KL weight {self.kl_weight:.4g}.")

    # Keras passes the index of the first and of the last batch of each
    # execution (they differ with steps_per_execution > 1): count from them,
    # not from the number of calls.
    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "batch":
            self._set(self.schedule(self._batches + batch))

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_batches = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        self._batches += self._epoch_batches
        self._epoch_batches = 0
        if logs is not None and self.kl_weight is not None:
            logs["kl_weight"] = self.kl_weight


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

    >>> series_x = np.random.random((800, 1)).astype("float32")
    >>> series_y = np.random.random((800, 1)).astype("float32")
    >>> x, y = keras_mrnn.stateful.make_stateful_batches(
    ...     series_x, series_y, batch_size=4, window=50)
    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(4, 50, 1)),
    ...     keras_mrnn.MarkovLSTM(4, stateful=True, return_sequences=True),
    ...     keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> history = model.fit(
    ...     x, y, batch_size=4, shuffle=False, epochs=2, verbose=0,
    ...     callbacks=[keras_mrnn.callbacks.ResetStates(verbose=1)])
    <BLANKLINE>
    ResetStates: states reset at the start of epoch 1.
    <BLANKLINE>
    ResetStates: states reset at the start of epoch 2.
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
        from keras_mrnn.stateful import reset_states

        reset_states(self.model)
        self.resets += 1
        if self.verbose:
            print(f"\nResetStates: states reset {where}.")

    def on_train_begin(self, logs=None):
        from keras_mrnn.stateful import stateful_layers

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
        from keras_mrnn.stateful import evaluate_preserving_states
        from keras_mrnn.stateful import stateful_layers

        if (epoch + 1) % self.every_n_epochs:
            return
        batch_size = self.batch_size
        layers = stateful_layers(self.model)
        if batch_size is None and layers and not isinstance(
            self.x, tf.data.Dataset
        ):
            # Each replica holds its own state rows, and `evaluate` splits
            # a global batch between the replicas.
            strategy = getattr(self.model, "distribute_strategy", None)
            if strategy is None:
                strategy = tf.distribute.get_strategy()
            batch_size = (
                int(layers[0].states[0].shape[0])
                * strategy.num_replicas_in_sync
            )
        self.results = evaluate_preserving_states(
            self.model, self.x, self.y, batch_size=batch_size,
            reset=self.reset_states, verbose=self.verbose, return_dict=True,
        )
        if logs is not None:
            for name, value in self.results.items():
                logs[f"{self.prefix}{name}"] = float(value)
