"""A float setting kept in a non-trainable variable, as a property (private).

`MarkovLSTMCell.temperature` and `VRNN.kl_weight` change while a model
trains (`callbacks.GumbelTemperatureScheduler`, `callbacks.KLWarmup`). A
Python float would be frozen into the compiled train step; a variable is
read by it at every step, also under XLA, and is saved with the model.
"""

from keras import initializers
from keras import ops


class ScheduledScalar:
    """A property of a layer whose value lives in a scalar variable.

    Before the layer is built the value is kept in `_initial_{name}`;
    `add_variable(layer)`, called in `build`, creates the non-trainable
    float32 variable `_{name}` (weight name `name`) from it. Reading gives
    a Python float; setting checks the value and assigns the variable once
    it exists.

    Args:
        validate: `validate(name, value)` returns the value as a checked
            float, or raises `ValueError`.
        doc: The property's docstring.
    """

    def __init__(self, validate, doc):
        self.validate = validate
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        if layer.built:
            return float(ops.convert_to_numpy(getattr(layer, f"_{self.name}")))
        return getattr(layer, f"_initial_{self.name}")

    def __set__(self, layer, value):
        value = self.validate(self.name, value)
        setattr(layer, f"_initial_{self.name}", value)
        # Also set before `Layer.__init__` has run, when there is no `built`.
        if getattr(layer, "built", False):
            getattr(layer, f"_{self.name}").assign(value)

    def add_variable(self, layer):
        """Creates the layer's variable; call it from `layer.build`."""
        variable = layer.add_weight(
            shape=(),
            name=self.name,
            initializer=initializers.Constant(
                getattr(layer, f"_initial_{self.name}")
            ),
            trainable=False,
            # Read as float32 under a mixed policy too: the maths that uses
            # it (the switch, the loss) is done in float32.
            autocast=False,
        )
        setattr(layer, f"_{self.name}", variable)
