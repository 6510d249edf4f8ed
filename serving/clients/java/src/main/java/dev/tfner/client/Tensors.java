package dev.tfner.client;

import com.google.protobuf.ByteString;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import org.tensorflow.framework.DataType;
import org.tensorflow.framework.TensorProto;
import org.tensorflow.framework.TensorShapeProto;

/**
 * Reads the values of a response {@link TensorProto} in either encoding a server may use.
 *
 * <p>Numbers come packed little-endian in {@code tensor_content} (what TF Serving and tfner.serve
 * write) or one by one in {@code int_val}/{@code float_val}; in the latter, TensorFlow lets a
 * sender stop early when the remaining values all equal the last one, which is then repeated.
 * Strings always come in {@code string_val}.
 */
final class Tensors {
  private Tensors() {}

  /** The tensor's shape; throws if it is not {@code rank}-dimensional. */
  static int[] shape(TensorProto tensor, String name, int rank) {
    TensorShapeProto shape = tensor.getTensorShape();
    if (shape.getDimCount() != rank) {
      throw malformed(name + " has rank " + shape.getDimCount() + ", expected " + rank);
    }
    int[] dims = new int[rank];
    for (int i = 0; i < rank; i++) {
      long size = shape.getDim(i).getSize();
      if (size < 0 || size > Integer.MAX_VALUE) {
        throw malformed(name + " has dimension " + i + " of size " + size);
      }
      dims[i] = (int) size;
    }
    return dims;
  }

  static int[] int32s(TensorProto tensor, String name, int count) {
    requireType(tensor, name, DataType.DT_INT32);
    int[] values = new int[count];
    if (!tensor.getTensorContent().isEmpty()) {
      ByteBuffer packed = packed(tensor.getTensorContent(), name, count, Integer.BYTES);
      for (int i = 0; i < count; i++) {
        values[i] = packed.getInt();
      }
      return values;
    }
    int given = tensor.getIntValCount();
    requireValueCount(name, given, count);
    for (int i = 0; i < count; i++) {
      values[i] = tensor.getIntVal(Math.min(i, given - 1));
    }
    return values;
  }

  static float[] floats(TensorProto tensor, String name, int count) {
    requireType(tensor, name, DataType.DT_FLOAT);
    float[] values = new float[count];
    if (!tensor.getTensorContent().isEmpty()) {
      ByteBuffer packed = packed(tensor.getTensorContent(), name, count, Float.BYTES);
      for (int i = 0; i < count; i++) {
        values[i] = packed.getFloat();
      }
      return values;
    }
    int given = tensor.getFloatValCount();
    requireValueCount(name, given, count);
    for (int i = 0; i < count; i++) {
      values[i] = tensor.getFloatVal(Math.min(i, given - 1));
    }
    return values;
  }

  /** The raw UTF-8 values; decoded only where read (the padding never is). */
  static List<ByteString> strings(TensorProto tensor, String name, int count) {
    requireType(tensor, name, DataType.DT_STRING);
    if (tensor.getStringValCount() != count) {
      throw malformed(
          name + " holds " + tensor.getStringValCount() + " strings for " + count + " elements");
    }
    return tensor.getStringValList();
  }

  private static ByteBuffer packed(ByteString content, String name, int count, int width) {
    if (content.size() != (long) count * width) {
      throw malformed(
          name + " has " + content.size() + " bytes of tensor_content for " + count + " elements");
    }
    return content.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
  }

  private static void requireType(TensorProto tensor, String name, DataType expected) {
    if (tensor.getDtype() != expected) {
      throw malformed(name + " is " + tensor.getDtype() + ", expected " + expected);
    }
  }

  private static void requireValueCount(String name, int given, int count) {
    if (given > count || (given == 0 && count > 0)) {
      throw malformed(name + " holds " + given + " values for " + count + " elements");
    }
  }

  static NerException malformed(String detail) {
    return new NerException(
        io.grpc.Status.Code.INTERNAL,
        "malformed PredictResponse: " + detail + "; is the model a tfner export?",
        1,
        null);
  }
}
