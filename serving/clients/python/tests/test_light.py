"""What makes the client light: no TensorFlow anywhere, stubs in a descriptor pool of their own."""

import importlib.util
import os
import subprocess
import sys

import pytest

from tfner_client import tensor_to_list
from tfner_client._proto.tensorflow.core.framework import tensor_pb2
from tfner_client._proto.tensorflow.core.framework import tensor_shape_pb2
from tfner_client._proto.tensorflow.core.framework import types_pb2


def test_tensorflow_is_not_installed_here():
    """This suite runs in a virtualenv without TensorFlow, so nothing below passes by accident."""
    for name in ("tensorflow", "tensorflow_serving", "numpy"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed; run this suite in a fresh venv"


def test_import_leaves_tensorflow_out():
    check = (
        "import sys, tfner_client, tfner_client.cli\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_serving', 'numpy'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_stubs_stay_out_of_the_default_descriptor_pool():
    from google.protobuf import descriptor_pool

    from tfner_client._descriptor_pool import POOL
    from tfner_client._proto.tensorflow_serving.apis import predict_pb2

    assert predict_pb2.DESCRIPTOR.pool is POOL
    assert POOL.FindFileByName("tensorflow_serving/apis/predict.proto") is predict_pb2.DESCRIPTOR
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindFileByName("tensorflow_serving/apis/predict.proto")
    assert predict_pb2.PredictRequest.__module__ == "tfner_client._proto.tensorflow_serving.apis.predict_pb2"


# Registers, in protobuf's default pool, a different file under a name the stubs use (what another
# TensorFlow version's tensor.proto would be), then builds and round-trips a request.
CLASHING_FILE_FIRST = """
from google.protobuf import descriptor_pb2, descriptor_pool
clash = descriptor_pb2.FileDescriptorProto(name="tensorflow/core/framework/tensor.proto", package="tensorflow")
clash.message_type.add(name="TensorProto").field.add(name="other", number=1, type=9, label=1)
descriptor_pool.Default().Add(clash)

from tfner_client import NerClient
from tfner_client._proto.tensorflow_serving.apis import predict_pb2
request = NerClient("127.0.0.1:1").build_request(["北京"])
assert predict_pb2.PredictRequest.FromString(request.SerializeToString()) == request
"""


@pytest.mark.parametrize("implementation", ["upb", "python"])
def test_a_different_file_of_the_same_name_does_not_clash(implementation):
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=implementation)
    done = subprocess.run([sys.executable, "-W", "error", "-c", CLASHING_FILE_FIRST],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr


def tensor(dtype, shape, **fields):
    return tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]),
        **fields,
    )


@pytest.mark.parametrize("proto, want", [
    # Packed little-endian, as TF Serving and tfner.serve send numbers.
    (tensor(types_pb2.DT_INT32, [2, 2], tensor_content=b"\x01\0\0\0\x02\0\0\0\x03\0\0\0\xff\xff\xff\xff"),
     [[1, 2], [3, -1]]),
    (tensor(types_pb2.DT_FLOAT, [2], tensor_content=b"\0\0\x80\x3e\0\0\0\x3f"), [0.25, 0.5]),
    # The typed fields, as other servers may send them.
    (tensor(types_pb2.DT_INT32, [3], int_val=[4, 5, 6]), [4, 5, 6]),
    (tensor(types_pb2.DT_FLOAT, [1, 2], float_val=[0.25, 0.5]), [[0.25, 0.5]]),
    (tensor(types_pb2.DT_STRING, [2, 1], string_val=[b"LOC", "北京".encode()]), [[b"LOC"], ["北京".encode()]]),
    # TensorFlow's short form: the last value fills the shape.
    (tensor(types_pb2.DT_INT32, [2, 2], int_val=[7]), [[7, 7], [7, 7]]),
    # Padding to width 0: rows without entities.
    (tensor(types_pb2.DT_STRING, [3, 0]), [[], [], []]),
    (tensor(types_pb2.DT_INT32, [0]), []),
])
def test_tensor_decoding(proto, want):
    assert tensor_to_list(proto) == want


def test_tensor_decoding_refuses_what_tfner_never_sends():
    with pytest.raises(ValueError, match="DT_HALF"):
        tensor_to_list(tensor(types_pb2.DT_HALF, [1], half_val=[0]))
    with pytest.raises(ValueError, match="needs 8"):
        tensor_to_list(tensor(types_pb2.DT_INT32, [2], tensor_content=b"\0\0\0\0"))
