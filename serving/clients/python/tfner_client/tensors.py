"""TensorProto <-> Python lists, without numpy.

A server may send numbers either packed in `tensor_content` (TF Serving and
tfner.serve do) or in the typed repeated fields (`int_val`, `float_val`, ...):
both are read. Packed bytes are little-endian, as TensorFlow writes them on
every platform it runs on.
"""

import struct

from tfner_client._proto.tensorflow.core.framework import tensor_pb2
from tfner_client._proto.tensorflow.core.framework import tensor_shape_pb2
from tfner_client._proto.tensorflow.core.framework import types_pb2

# dtype -> (struct format of one packed element, the typed field holding values, zero).
_NUMERIC = {
    types_pb2.DT_INT32: ("i", "int_val", 0),
    types_pb2.DT_INT64: ("q", "int64_val", 0),
    types_pb2.DT_FLOAT: ("f", "float_val", 0.0),
    types_pb2.DT_DOUBLE: ("d", "double_val", 0.0),
}


def string_tensor(values):
    """A DT_STRING TensorProto of shape [len(values)] from a list of bytes."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        ),
        string_val=values,
    )


def tensor_values(proto):
    """The flat, row-major values of a TensorProto: list of int, float or bytes.

    Raises:
        ValueError: a dtype tfner signatures never return, or a value count
            that does not fit the shape.
    """
    count = 1
    for size in _shape(proto):
        count *= size
    if proto.dtype == types_pb2.DT_STRING:
        values, zero = list(proto.string_val), b""
    elif proto.dtype in _NUMERIC:
        fmt, field, zero = _NUMERIC[proto.dtype]
        if proto.tensor_content:
            size = struct.calcsize(fmt)
            if len(proto.tensor_content) != count * size:
                raise ValueError(
                    f"tensor_content holds {len(proto.tensor_content)} bytes; shape "
                    f"{_shape(proto)} of {types_pb2.DataType.Name(proto.dtype)} needs {count * size}"
                )
            return list(struct.unpack(f"<{count}{fmt}", proto.tensor_content))
        values = list(getattr(proto, field))
    else:
        raise ValueError(f"unexpected dtype {types_pb2.DataType.Name(proto.dtype)} in the response")
    if len(values) == count:
        return values
    # TensorFlow's own reading of a short value list (tf.make_ndarray): the
    # last value repeats to fill the shape; no value at all means zeros.
    if not values and count:
        return [zero] * count
    if 0 < len(values) < count:
        return values + [values[-1]] * (count - len(values))
    raise ValueError(f"the tensor holds {len(values)} values for shape {_shape(proto)}")


def tensor_to_list(proto):
    """A TensorProto as nested lists (like numpy's `tolist()`): a scalar, a list, a list of lists, ..."""
    values = tensor_values(proto)
    dims = _shape(proto)
    return _reshape(values, dims) if dims else values[0]


def _reshape(values, dims):
    """Row-major flat values -> nested lists of shape dims (works for zero-sized dimensions too)."""
    if len(dims) == 1:
        return values
    step = 1
    for size in dims[1:]:
        step *= size
    return [_reshape(values[row * step:(row + 1) * step], dims[1:]) for row in range(dims[0])]


def _shape(proto):
    return [dim.size for dim in proto.tensor_shape.dim]
