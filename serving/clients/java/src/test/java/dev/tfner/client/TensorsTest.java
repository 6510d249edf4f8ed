package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.google.protobuf.ByteString;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;
import org.tensorflow.framework.DataType;
import org.tensorflow.framework.TensorProto;
import org.tensorflow.framework.TensorShapeProto;
import tensorflow.serving.Predict.PredictResponse;

/**
 * Both number encodings a server may send; the live tests only see the one tfner.serve writes
 * (tensor_content), so the other is checked on hand-built responses here.
 */
class TensorsTest {

  @Test
  void int32sFromPackedContent() {
    ByteBuffer packed = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN).putInt(1).putInt(-2).putInt(300000);
    TensorProto t = tensor(DataType.DT_INT32, 3).setTensorContent(ByteString.copyFrom(packed.array())).build();
    assertArrayEquals(new int[] {1, -2, 300000}, Tensors.int32s(t, "t", 3));
  }

  @Test
  void int32sFromValuesWithTheLastRepeated() {
    TensorProto t = tensor(DataType.DT_INT32, 4).addIntVal(7).addIntVal(5).build();
    assertArrayEquals(new int[] {7, 5, 5, 5}, Tensors.int32s(t, "t", 4));
  }

  @Test
  void floatsFromEitherEncoding() {
    ByteBuffer packed = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putFloat(0.5f).putFloat(0.25f);
    TensorProto content = tensor(DataType.DT_FLOAT, 2).setTensorContent(ByteString.copyFrom(packed.array())).build();
    TensorProto values = tensor(DataType.DT_FLOAT, 2).addFloatVal(0.5f).addFloatVal(0.25f).build();
    assertArrayEquals(new float[] {0.5f, 0.25f}, Tensors.floats(content, "t", 2));
    assertArrayEquals(new float[] {0.5f, 0.25f}, Tensors.floats(values, "t", 2));
  }

  @Test
  void wrongSizesAndTypesAreMalformed() {
    TensorProto shortContent = tensor(DataType.DT_INT32, 2).setTensorContent(ByteString.copyFrom(new byte[5])).build();
    assertThrows(NerException.class, () -> Tensors.int32s(shortContent, "t", 2));
    TensorProto floats = tensor(DataType.DT_FLOAT, 1).addFloatVal(1f).build();
    assertThrows(NerException.class, () -> Tensors.int32s(floats, "t", 1));
    TensorProto empty = tensor(DataType.DT_INT32, 1).build();
    assertThrows(NerException.class, () -> Tensors.int32s(empty, "t", 1));
  }

  @Test
  void responseWithValueFieldsAndPaddingDecodes() {
    // Two texts, padded to width 2: the first has two entities, the second none.
    String first = "😀北京上海";
    PredictResponse response =
        PredictResponse.newBuilder()
            .putOutputs("num_entities", tensor(DataType.DT_INT32, 2).addIntVal(2).addIntVal(0).build())
            .putOutputs("entity_labels", strings(2, 2, "LOC", "LOC", "", ""))
            .putOutputs("entity_texts", strings(2, 2, "北京", "上海", "", ""))
            .putOutputs("entity_starts", tensor(DataType.DT_INT32, 2, 2).addIntVal(1).addIntVal(3).addIntVal(0).build())
            .putOutputs("entity_ends", tensor(DataType.DT_INT32, 2, 2).addIntVal(3).addIntVal(5).addIntVal(0).build())
            .putOutputs("entity_scores", tensor(DataType.DT_FLOAT, 2, 2).addFloatVal(0.9f).addFloatVal(0.8f).addFloatVal(0f).build())
            .build();
    List<Prediction> predictions = PredictResponses.decode(response, List.of(first, "nothing"));
    assertEquals(
        List.of(new Entity("LOC", 1, 3, "北京", 0.9f, 2, 4), new Entity("LOC", 3, 5, "上海", 0.8f, 4, 6)),
        predictions.get(0).entities());
    assertEquals(List.of(), predictions.get(1).entities());
    assertEquals(OptionalLong.empty(), predictions.get(0).modelVersion());
  }

  @Test
  void offsetsPastTheTextAreMalformed() {
    PredictResponse response =
        PredictResponse.newBuilder()
            .putOutputs("num_entities", tensor(DataType.DT_INT32, 1).addIntVal(1).build())
            .putOutputs("entity_labels", strings(1, 1, "LOC"))
            .putOutputs("entity_texts", strings(1, 1, "北京"))
            .putOutputs("entity_starts", tensor(DataType.DT_INT32, 1, 1).addIntVal(1).build())
            .putOutputs("entity_ends", tensor(DataType.DT_INT32, 1, 1).addIntVal(3).build())
            .putOutputs("entity_scores", tensor(DataType.DT_FLOAT, 1, 1).addFloatVal(1f).build())
            .build();
    NerException e = assertThrows(NerException.class, () -> PredictResponses.decode(response, List.of("北京")));
    assertEquals(io.grpc.Status.Code.INTERNAL, e.code());
  }

  private static TensorProto.Builder tensor(DataType type, int... dims) {
    TensorShapeProto.Builder shape = TensorShapeProto.newBuilder();
    for (int dim : dims) {
      shape.addDim(TensorShapeProto.Dim.newBuilder().setSize(dim));
    }
    return TensorProto.newBuilder().setDtype(type).setTensorShape(shape);
  }

  private static TensorProto strings(int rows, int width, String... values) {
    TensorProto.Builder t = tensor(DataType.DT_STRING, rows, width);
    for (String v : values) {
      t.addStringVal(ByteString.copyFromUtf8(v));
    }
    return t.build();
  }
}
