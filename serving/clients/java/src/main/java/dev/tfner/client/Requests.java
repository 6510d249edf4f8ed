package dev.tfner.client;

import com.google.protobuf.ByteString;
import com.google.protobuf.Int64Value;
import java.util.List;
import org.tensorflow.framework.DataType;
import org.tensorflow.framework.TensorProto;
import org.tensorflow.framework.TensorShapeProto;
import tensorflow.serving.GetModelStatus.GetModelStatusRequest;
import tensorflow.serving.Model.ModelSpec;
import tensorflow.serving.Predict.PredictRequest;

/** Builds the requests of the tfner serving contract (export/README.md). */
final class Requests {
  static final String SIGNATURE = "serving_default";
  static final String INPUT = "text";

  private Requests() {}

  /** The model spec of a Predict call: name, signature, and the version or label pinned, if any. */
  static ModelSpec modelSpec(String model, Long version, String label) {
    ModelSpec.Builder spec = ModelSpec.newBuilder().setName(model).setSignatureName(SIGNATURE);
    if (version != null) {
      spec.setVersion(Int64Value.of(version));
    } else if (label != null) {
      spec.setVersionLabel(label);
    }
    return spec.build();
  }

  /** One chunk's request: a DT_STRING tensor of shape [n] holding each text's UTF-8 bytes. */
  static PredictRequest predict(ModelSpec spec, List<String> texts) {
    TensorProto.Builder input =
        TensorProto.newBuilder()
            .setDtype(DataType.DT_STRING)
            .setTensorShape(
                TensorShapeProto.newBuilder().addDim(TensorShapeProto.Dim.newBuilder().setSize(texts.size())));
    for (String text : texts) {
      input.addStringVal(ByteString.copyFromUtf8(text));
    }
    return PredictRequest.newBuilder()
        .setModelSpec(spec)
        .putInputs(INPUT, input.build())
        .addAllOutputFilter(PredictResponses.OUTPUTS)
        .build();
  }

  /** Every version of the model: no version or label, whatever the client pins for Predict. */
  static GetModelStatusRequest status(String model) {
    return GetModelStatusRequest.newBuilder().setModelSpec(ModelSpec.newBuilder().setName(model)).build();
  }
}
