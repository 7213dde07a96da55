"""The packed per-step output of a cell (private).

A cell's `output_size` must be one int (docs/KERAS_NOTES.md), so a cell that
hands its layer several per-step quantities concatenates them into one
vector, which the layer splits after the loop. A `PackedLayout` describes
that vector once, by the names and widths of its fields, and gives the three
things the cell and its layer need: the width, the packing and the split.
"""

from keras import ops

# The width of a scalar field: one column, packed from and split back into a
# tensor without the feature axis.
SCALAR = ()


class PackedLayout:
    """The ordered fields of a packed per-step vector.

    Args:
        fields: `(name, width)` pairs, in packing order: `width` a positive
            int, or `SCALAR` for a one-column field.

    Example:

    >>> layout = PackedLayout([("h", 3), ("kl", SCALAR)])
    >>> layout.size
    4
    >>> packed = layout.pack({"h": ops.ones((2, 3)), "kl": ops.zeros((2,))})
    >>> tuple(packed.shape)
    (2, 4)
    >>> {name: tuple(t.shape) for name, t in layout.unpack(packed).items()}
    {'h': (2, 3), 'kl': (2,)}
    """

    def __init__(self, fields):
        self.fields = tuple(fields)

    @property
    def names(self):
        """The fields' names, in order."""
        return tuple(name for name, _ in self.fields)

    @property
    def size(self):
        """The width of the packed vector."""
        return sum(
            1 if width == SCALAR else width for _, width in self.fields
        )

    def pack(self, parts, dtype=None):
        """Concatenates the fields along the last axis.

        Args:
            parts: Dict of tensors `(..., width)` (`(...)` for a scalar
                field) with every field of the layout; other keys are
                ignored.
            dtype: Optional dtype to cast every field to.

        Returns:
            A tensor `(..., size)`; with a single field, that field's
            tensor itself.
        """
        tensors = []
        for name, width in self.fields:
            tensor = parts[name]
            if dtype is not None:
                tensor = ops.cast(tensor, dtype)
            if width == SCALAR:
                tensor = ops.expand_dims(tensor, -1)
            tensors.append(tensor)
        if len(tensors) == 1:
            return tensors[0]
        return ops.concatenate(tensors, axis=-1)

    def unpack(self, packed):
        """Splits a packed tensor `(..., size)` into a dict of its fields.

        Returns:
            A dict of tensors `(..., width)` (`(...)` for a scalar field),
            in field order; with a single vector field, `packed` itself.
        """
        if len(self.fields) == 1 and self.fields[0][1] != SCALAR:
            # No slice: as `pack`, one field is the tensor itself (a slice
            # would also stop TF's graph optimizer from fusing the ops on
            # either side, which changes float32 rounding).
            return {self.fields[0][0]: packed}
        parts, start = {}, 0
        for name, width in self.fields:
            if width == SCALAR:
                parts[name] = packed[..., start]
                start += 1
            else:
                parts[name] = packed[..., start : start + width]
                start += width
        return parts
