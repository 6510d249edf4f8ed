"""tfner.serve's gRPC API: TensorFlow Serving's services over the predictor.

tensorflow.serving.PredictionService (Predict, GetModelMetadata; Classify,
Regress and MultiInference answer UNIMPLEMENTED) and
tensorflow.serving.ModelService (GetModelStatus, HandleReloadConfigRequest),
with the stock protos of the tensorflow-serving-api wheel, so that every
client written for `tensorflow_model_server` works against it unchanged.
Each servicer turns a ServingError into its gRPC status and counts the call.
"""

import logging
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfner.server import config as server_config
from tfner.server import tensor_protos
from tfner.server.errors import ServingError
from tfner.server.predictor import array_from_tensor_proto
from tfner.server.predictor import invalid

log = logging.getLogger("tfner.serve")

PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name




def _spec_args(model_spec):
    """ModelSpec -> (name, version or None, label or None)."""
    if not model_spec.name:
        raise invalid("model_spec.name is empty; name the model, e.g. \"ner\"")
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return model_spec.name, version, label


def _deadline(context):
    """The RPC's deadline on the time.monotonic() clock, or None."""
    try:
        remaining = context.time_remaining()
    except Exception:  # No deadline set.
        return None
    if remaining is None or remaining > 1e8:
        return None
    return time.monotonic() + remaining


class _Servicer:
    """Shared error handling: ServingError -> gRPC status; counts every call.

    Args:
        predictor: predictor.Predictor.
        metrics: metrics.Metrics.
        stopping: threading.Event or None. Once set, new calls get
            UNAVAILABLE (which clients retry, elsewhere or later) instead of
            running; calls already running finish.
    """

    def __init__(self, predictor, metrics, stopping=None):
        self.predictor = predictor
        self.metrics = metrics
        self.stopping = stopping

    def _handle(self, method, request, context, work):
        model = request.model_spec.name if hasattr(request, "model_spec") else ""
        if model not in self.predictor.store.model_names():
            model = "<other>"  # Callers choose names: keep label values bounded.
        try:
            if self.stopping is not None and self.stopping.is_set():
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   "the server is shutting down; retry (another replica, or this one once restarted)")
            response = work()
        except ServingError as e:
            error = e
        except Exception as e:
            log.exception("%s failed", method)
            error = ServingError(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
        else:
            self.metrics.inc("tfner_serving_requests_total", api="grpc", method=method, model=model, code="OK")
            return response
        self.metrics.inc("tfner_serving_requests_total", api="grpc", method=method, model=model,
                         code=error.code.name)
        context.abort(error.code, error.message)


class PredictionServicer(_Servicer, prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata."""

    def Predict(self, request, context):  # noqa: N802 (proto naming)
        def work():
            name, version, label = _spec_args(request.model_spec)
            servable, signature, outputs = self.predictor.predict(
                name, version, label, request.model_spec.signature_name,
                dict(request.inputs), array_from_tensor_proto,
                output_filter=request.output_filter, deadline=_deadline(context),
            )
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature.name
            for key, value in outputs.items():
                if tensor_protos.from_numpy(value, response.outputs[key]) is None:
                    response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

        return self._handle("Predict", request, context, work)

    def GetModelMetadata(self, request, context):  # noqa: N802
        def work():
            name, version, label = _spec_args(request.model_spec)
            return self.predictor.metadata(name, version, label, request.metadata_field)

        return self._handle("GetModelMetadata", request, context, work)

    def _unimplemented(self, method, request, context):
        def work():
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{method} is not implemented: tfner exports a predict signature "
                "(tensorflow/serving/predict); call Predict",
            )

        return self._handle(method, request, context, work)

    def Classify(self, request, context):  # noqa: N802
        return self._unimplemented("Classify", request, context)

    def Regress(self, request, context):  # noqa: N802
        return self._unimplemented("Regress", request, context)

    def MultiInference(self, request, context):  # noqa: N802
        return self._unimplemented("MultiInference", request, context)


class ModelServicer(_Servicer, model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: version status and config reloads."""

    def GetModelStatus(self, request, context):  # noqa: N802
        def work():
            name, version, label = _spec_args(request.model_spec)
            return self.predictor.status(name, version, label)

        return self._handle("GetModelStatus", request, context, work)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        def work():
            try:
                specs = server_config.model_specs_from_proto(
                    request.config, source="ReloadConfigRequest.config"
                )
            except server_config.ConfigError as e:
                raise invalid(str(e)) from None
            self.predictor.store.reload(specs)
            log.info("reloaded model config: %s", ", ".join(s.name for s in specs))
            return model_management_pb2.ReloadConfigResponse()  # status: OK

        return self._handle("HandleReloadConfigRequest", request, context, work)
