package dev.tfner.client;

import com.google.protobuf.Descriptors.MethodDescriptor;
import com.google.protobuf.Descriptors.ServiceDescriptor;
import io.grpc.MethodDescriptor.MethodType;
import io.grpc.protobuf.ProtoUtils;
import tensorflow.serving.GetModelStatus.GetModelStatusRequest;
import tensorflow.serving.GetModelStatus.GetModelStatusResponse;
import tensorflow.serving.ModelServiceOuterClass;
import tensorflow.serving.Predict.PredictRequest;
import tensorflow.serving.Predict.PredictResponse;
import tensorflow.serving.PredictionServiceOuterClass;

/**
 * The two TF Serving RPCs the client calls, as gRPC method descriptors.
 *
 * <p>grpc-java's code generator would write these into {@code PredictionServiceGrpc} and {@code
 * ModelServiceGrpc}; its native binary is not available to this project's build (see
 * generate_stubs.sh), so they are built here from the generated protobuf file descriptors: the
 * service and method names, and the request and response types, still come from TF Serving's
 * protos, and a name that drifted would fail here, when the class loads, not on the wire.
 */
final class TfServingMethods {
  static final io.grpc.MethodDescriptor<PredictRequest, PredictResponse> PREDICT =
      unary(
          PredictionServiceOuterClass.getDescriptor().findServiceByName("PredictionService"),
          "Predict",
          PredictRequest.getDefaultInstance(),
          PredictResponse.getDefaultInstance());

  static final io.grpc.MethodDescriptor<GetModelStatusRequest, GetModelStatusResponse>
      GET_MODEL_STATUS =
          unary(
              ModelServiceOuterClass.getDescriptor().findServiceByName("ModelService"),
              "GetModelStatus",
              GetModelStatusRequest.getDefaultInstance(),
              GetModelStatusResponse.getDefaultInstance());

  private TfServingMethods() {}

  private static <ReqT extends com.google.protobuf.Message, RespT extends com.google.protobuf.Message>
      io.grpc.MethodDescriptor<ReqT, RespT> unary(
          ServiceDescriptor service, String name, ReqT request, RespT response) {
    MethodDescriptor method = service.findMethodByName(name);
    if (method == null
        || !method.getInputType().equals(request.getDescriptorForType())
        || !method.getOutputType().equals(response.getDescriptorForType())) {
      throw new IllegalStateException(
          service.getFullName() + "." + name + " is missing or has other types in the generated"
              + " protos; regenerate them with serving/clients/generate_stubs.py");
    }
    return io.grpc.MethodDescriptor.<ReqT, RespT>newBuilder()
        .setType(MethodType.UNARY)
        .setFullMethodName(io.grpc.MethodDescriptor.generateFullMethodName(service.getFullName(), name))
        .setRequestMarshaller(ProtoUtils.marshaller(request))
        .setResponseMarshaller(ProtoUtils.marshaller(response))
        .build();
  }
}
