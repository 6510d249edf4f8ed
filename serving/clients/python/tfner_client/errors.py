"""Typed errors for the gRPC status a server answers with.

Every error a call can end in is a `NerError`; the five status classes a
caller handles differently have a subclass each. `NerError` is also a
`grpc.RpcError` with `code()` and `details()`, so code written against a
plain gRPC stub (`except grpc.RpcError as e: e.code()`) keeps working.

    try:
        client.predict(texts)
    except tfner_client.InvalidArgumentError as e:   # a text the server refuses
        print(e.code().name, e.message)
"""

import grpc


class NerError(grpc.RpcError):
    """The server refused a call, or it could not be made.

    Raised as-is for a status without a subclass of its own (INTERNAL,
    UNIMPLEMENTED, PERMISSION_DENIED, ...).

    Attributes:
        status_code: grpc.StatusCode. The call's status.
        message: str. The server's (or gRPC's) message.
    """

    def __init__(self, status_code, message):
        super().__init__(f"{status_code.name}: {message}")
        self.status_code = status_code
        self.message = message

    # The grpc.Call accessors that callers of plain stubs use.
    def code(self):
        """grpc.StatusCode of the call."""
        return self.status_code

    def details(self):
        """The status message, as `grpc.RpcError.details()`."""
        return self.message


class NotFoundError(NerError):
    """NOT_FOUND: no such model, version or version label on the server."""


class InvalidArgumentError(NerError):
    """INVALID_ARGUMENT: the request breaks a server limit (texts per call, characters per text) or the signature."""


class ResourceExhaustedError(NerError):
    """RESOURCE_EXHAUSTED: too many characters in one call; send fewer or shorter texts per call."""


class UnavailableError(NerError):
    """UNAVAILABLE through every retry: no server answered (down, restarting, unreachable, TLS/plaintext),
    or its batch queue stayed full."""


class DeadlineExceededError(NerError):
    """DEADLINE_EXCEEDED: the call took longer than the client's `timeout`."""


class MalformedResponseError(ValueError):
    """The server answered, but not as a tfner model does: outputs missing, or of the wrong type or shape.

    Not a NerError: no gRPC status says it, the call itself succeeded. A ValueError, which is what
    `entities_from_response` raised before this class existed.
    """


_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(error):
    """The typed NerError for a `grpc.RpcError` raised by a stub (chain it with `raise ... from error`)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    code = code or grpc.StatusCode.UNKNOWN
    return _BY_CODE.get(code, NerError)(code, details or "")
