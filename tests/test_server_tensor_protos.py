"""tfner.server.tensor_protos: the fast numpy <-> TensorProto path agrees with TensorFlow's own."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tfner.server import tensor_protos

ARRAYS = [
    np.array([[b"LOC", b""], ["北京".encode(), b"\xff\x00"]], dtype=object),
    np.array([[1, -2, 3]], np.int32),
    np.array([2**40, -(2**40)], np.int64),
    np.array([[0.25, -1.5], [3.0e-8, np.inf]], np.float32),
    np.array([0.1, 2.0], np.float64),
    np.array([True, False, True]),
    np.zeros([2, 0], np.int32),
    np.array(7, np.int32),  # A scalar.
]
# Packed little-endian, as the wire format requires (tf.make_tensor_proto
# copies such an array's bytes as they are, so it is not compared below).
BIG_ENDIAN = np.array([1.5, 2.5], np.dtype(">f4"))


@pytest.mark.parametrize("array", ARRAYS + [BIG_ENDIAN], ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_from_numpy_reads_back_with_tensorflow(array):
    proto = tensor_protos.from_numpy(array)
    assert proto.dtype == tf.as_dtype(array.dtype.newbyteorder("=")).as_datatype_enum
    back = tf.make_ndarray(proto)
    assert back.shape == array.shape
    assert back.tolist() == array.tolist()


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_to_numpy_reads_tensorflow_protos(array):
    back = tensor_protos.to_numpy(tf.make_tensor_proto(array))
    assert back.shape == array.shape
    assert back.dtype == (object if array.dtype == object else array.dtype.newbyteorder("="))
    assert back.tolist() == array.tolist()


def test_str_arrays_are_encoded_as_utf8():
    proto = tensor_protos.from_numpy(np.array(["北京", "a"]))
    assert proto.dtype == types_pb2.DT_STRING
    assert list(proto.string_val) == ["北京".encode(), b"a"]


def test_typed_value_fields_are_read_and_a_single_value_fills_the_shape():
    proto = tf.make_tensor_proto([0.25, 0.5], dtype=tf.float32)
    proto.ClearField("tensor_content")
    proto.float_val.extend([0.25, 0.5])
    assert tensor_protos.to_numpy(proto).tolist() == [0.25, 0.5]
    filled = tf.make_tensor_proto(3, dtype=tf.int32, shape=[2, 2])  # TF writes one int_val.
    assert len(filled.int_val) == 1
    assert tensor_protos.to_numpy(filled).tolist() == [[3, 3], [3, 3]]


def test_other_dtypes_are_left_to_tensorflow():
    assert tensor_protos.from_numpy(np.array([1], np.uint16)) is None
    assert tensor_protos.to_numpy(tf.make_tensor_proto(np.array([1], np.uint16))) is None


def test_content_that_disagrees_with_the_shape_raises():
    proto = tf.make_tensor_proto(np.array([1, 2, 3], np.int32))
    proto.tensor_shape.dim[0].size = 4
    with pytest.raises(ValueError):
        tensor_protos.to_numpy(proto)
