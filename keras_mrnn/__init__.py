"""keras-mrnn: stochastic recurrent layers for Keras 3.

Public API:
    MarkovLSTMCell, MarkovLSTM: the Markov LSTM of Kuo & Chien (2018).
    RegimeMixture: the next step's distribution, a mixture over the
        regimes of an HMMSwitch's model (a forecasting head), and
        regime_forecaster, an LSTM summary before it.
    VRNNCell, VRNN: the variational RNN of Chung et al. (2015).
    reset_states: reset every stateful layer of a model.
    callbacks: GumbelTemperatureScheduler, KLWarmup, ResetStates,
        StatefulEvaluation.
    gumbel: Gumbel-softmax sampling.
    datasets: MNIST loader and the synthetic tasks of the examples.
    plotting: figures of switches, state usage, predictions and images.
    stateful: helpers for stateful training.
    switches: the switches of the Markov LSTM (LinearSwitch,
        PredictiveSwitch, HMMSwitch).
"""

from keras_mrnn import callbacks
from keras_mrnn import datasets
from keras_mrnn import forecasting
from keras_mrnn import gumbel
from keras_mrnn import plotting
from keras_mrnn import stateful
from keras_mrnn import switches
from keras_mrnn.markov_lstm import MarkovLSTM
from keras_mrnn.markov_lstm import MarkovLSTMCell
from keras_mrnn.regime_mixture import RegimeMixture
from keras_mrnn.regime_mixture import regime_forecaster
from keras_mrnn.stateful import reset_states
from keras_mrnn.vrnn import VRNN
from keras_mrnn.vrnn import VRNNCell

__version__ = "0.1.0"

__all__ = [
    "MarkovLSTM",
    "MarkovLSTMCell",
    "RegimeMixture",
    "VRNN",
    "VRNNCell",
    "callbacks",
    "datasets",
    "forecasting",
    "gumbel",
    "plotting",
    "regime_forecaster",
    "reset_states",
    "stateful",
    "switches",
]
