"""The one error type of tfner.serve, shared by its gRPC and REST front ends.

Every failure a caller can cause or observe is raised as `ServingError` with a
gRPC status code and a message that says what was wrong and what to do. The
gRPC servicers abort with the code; the REST handler maps it to an HTTP status
the way TensorFlow Serving's REST API does.
"""

import grpc

# gRPC status -> HTTP status, as TF Serving's REST API reports them.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.CANCELLED: 499,
}


class ServingError(Exception):
    """A request failed with a gRPC status code and a human-readable message.

    Args:
        code: grpc.StatusCode. The status the caller receives.
        message: str. What was wrong, where, and what to do about it.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self):
        return HTTP_STATUS.get(self.code, 500)

    def __repr__(self):
        return f"ServingError({self.code.name}, {self.message!r})"
