"""numpy <-> TensorProto for the request/response hot path, without TensorFlow.

`tf.make_tensor_proto` and `tf.make_ndarray` are general but slow: building
the seven outputs of one tfner response with them costs ~140 us of Python,
about as much as gRPC's own work for a request. These two functions cover the
dtypes a tfner signature uses, in the encodings TF Serving itself writes and
reads: strings in `string_val`, numbers packed little-endian in
`tensor_content`. Any other dtype returns None, and callers fall back to the
TensorFlow functions.

The client imports this module too, so it needs numpy and the protos only.
"""

import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2

# DataType enum <-> little-endian numpy dtype, for the packed encodings.
_NUMERIC = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
    types_pb2.DT_BOOL: np.dtype("bool"),
}
_ENUM_OF = {dtype.newbyteorder("="): enum for enum, dtype in _NUMERIC.items()}
# The typed fields a sender may use instead of tensor_content.
_VALUE_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
}


def to_numpy(proto):
    """TensorProto -> np.ndarray, or None for a dtype this module does not read.

    Reads both encodings: typed `*_val` fields (a single value stands for the
    whole tensor, as TensorFlow allows) or packed `tensor_content`. Strings
    come back as an object array of bytes. The caller has checked that the
    element count matches the shape.
    """
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.dtype == types_pb2.DT_STRING:
        return np.array(list(proto.string_val), dtype=object).reshape(shape)
    dtype = _NUMERIC.get(proto.dtype)
    if dtype is None:
        return None
    count = int(np.prod(shape)) if shape else 1
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype=dtype)
    else:
        values = np.array(getattr(proto, _VALUE_FIELD[proto.dtype]), dtype=dtype)
        if 0 < len(values) < count:  # A repeated last value may be elided.
            values = np.concatenate([values, np.repeat(values[-1:], count - len(values))])
    return values.astype(dtype.newbyteorder("=")).reshape(shape)


def from_numpy(array, proto=None):
    """np.ndarray of bytes/str or a numeric dtype -> TensorProto, or None for other dtypes.

    Fills `proto` (an empty TensorProto, e.g. a response's map entry, which spares a copy) when given.
    """
    if array.dtype == object or array.dtype.kind in "SU":
        dtype = types_pb2.DT_STRING
    else:
        dtype = _ENUM_OF.get(array.dtype.newbyteorder("="))
        if dtype is None:
            return None
    proto = tensor_pb2.TensorProto() if proto is None else proto
    proto.dtype = dtype
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape)
    if dtype != types_pb2.DT_STRING:
        proto.tensor_content = np.ascontiguousarray(array, dtype=_NUMERIC[dtype]).tobytes()
        return proto
    values = array.reshape(-1).tolist()
    try:
        proto.string_val.extend(values)  # the signature's outputs: bytes already, no per-value Python
    except TypeError:  # str among them (or numpy scalars): encode one by one
        del proto.string_val[:]
        proto.string_val.extend(v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values)
    return proto
