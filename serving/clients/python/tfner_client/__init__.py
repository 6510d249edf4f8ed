"""tfner-client: call a tfner model served by TF Serving or tfner.serve, without TensorFlow.

    from tfner_client import NerClient

    with NerClient("localhost:8500", label="stable") as client:
        for entities in client.predict(["北京欢迎你", "他从上海来"]):
            for e in entities:
                print(e.label, e.start, e.end, e.text, e.score)

Offsets are Unicode code-point offsets, the same as Python string indices:
`text[e.start:e.end] == e.text`. Dependencies: grpcio and protobuf only; the
TF Serving stubs are generated into `tfner_client._proto` and registered in a
descriptor pool of their own, so tensorflow may be imported beside it.
"""

from tfner_client.client import LOAD_BALANCING_POLICIES
from tfner_client.client import RETRYABLE
from tfner_client.client import NerClient
from tfner_client.entities import ENTITY_OUTPUTS
from tfner_client.entities import Entity
from tfner_client.entities import entities_from_response
from tfner_client.errors import DeadlineExceededError
from tfner_client.errors import InvalidArgumentError
from tfner_client.errors import MalformedResponseError
from tfner_client.errors import NerError
from tfner_client.errors import NotFoundError
from tfner_client.errors import ResourceExhaustedError
from tfner_client.errors import UnavailableError
from tfner_client.status import VersionStatus
from tfner_client.tensors import tensor_to_list

__version__ = "0.1.0"

__all__ = [
    "DeadlineExceededError",
    "ENTITY_OUTPUTS",
    "Entity",
    "InvalidArgumentError",
    "LOAD_BALANCING_POLICIES",
    "MalformedResponseError",
    "NerClient",
    "NerError",
    "NotFoundError",
    "RETRYABLE",
    "ResourceExhaustedError",
    "UnavailableError",
    "VersionStatus",
    "entities_from_response",
    "tensor_to_list",
]
