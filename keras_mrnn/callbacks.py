"""Keras callbacks for the package's layers."""

import math

import keras

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

    >>> model.fit(x, y, epochs=10, callbacks=[
    ...     keras_mrnn.callbacks.GumbelTemperatureScheduler(5.0, 0.1, 0.1)])
    """

    def __init__(self, initial=5.0, rate=0.1, minimum=0.1, verbose=0):
        super().__init__()
        self.initial = check.positive_float("initial", initial)
        self.rate = check.non_negative_float("rate", rate)
        self.minimum = check.positive_float("minimum", minimum)
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
    across `fit` calls. The weight is a variable read by the compiled train
    step, so the change takes effect without recompiling, also with
    `jit_compile=True`. The value is written to the epoch's logs as
    `kl_weight` (and so shows in `History` and CSV/TensorBoard loggers).

    Args:
        duration: Positive integer, the number of epochs or batches over
            which the weight goes from `initial` to `final`.
        unit: `"epoch"` (default) or `"batch"`.
        initial: Non-negative float, the weight at the start (0.0).
        final: Non-negative float, the weight after the warm-up (1.0).
        verbose: If 1, print the weight at each epoch start.

    Example:

    >>> model.fit(x, epochs=20, callbacks=[
    ...     keras_mrnn.callbacks.KLWarmup(10, unit="epoch")])
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
        self._batches = 0
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

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "batch":
            self._set(self.schedule(self._batches))
            self._batches += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.kl_weight is not None:
            logs["kl_weight"] = self.kl_weight
