"""A model's version states, as ModelService.GetModelStatus reports them."""

import dataclasses

from tfner_client._proto.tensorflow_serving.apis import get_model_status_pb2
from tfner_client._proto.xla.tsl.protobuf import error_codes_pb2


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """The state of one version of a served model.

    Args:
        version: int. The version number.
        state: str. "START", "LOADING", "AVAILABLE", "UNLOADING" or "END".
        error_code: str. "OK", or why the version failed to load (e.g. "NOT_FOUND").
        error_message: str. The server's message for a failed version; "" when OK.
    """

    version: int
    state: str
    error_code: str
    error_message: str


def status_request(model):
    """GetModelStatusRequest for every version of `model`."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    return request


def versions_from_response(response):
    """GetModelStatusResponse -> list of VersionStatus, by version number."""
    states = get_model_status_pb2.ModelVersionStatus.State
    return sorted(
        (
            VersionStatus(
                version=status.version,
                state=states.Name(status.state),
                error_code=error_codes_pb2.Code.Name(status.status.error_code),
                error_message=status.status.error_message,
            )
            for status in response.model_version_status
        ),
        key=lambda status: status.version,
    )
