package dev.tfner.client;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import org.tensorflow.framework.TensorProto;
import tensorflow.serving.Predict.PredictResponse;

/**
 * Turns a tfner {@code PredictResponse} into one {@link Prediction} per text.
 *
 * <p>The outputs are batch-major and padded to the widest row: row i of {@code entity_*} holds
 * {@code num_entities[i]} entities, then padding that is never read. The padded width changes
 * from call to call (and with server-side batching), so it is read from each tensor's shape.
 */
final class PredictResponses {
  static final String NUM_ENTITIES = "num_entities";
  static final String LABELS = "entity_labels";
  static final String STARTS = "entity_starts";
  static final String ENDS = "entity_ends";
  static final String TEXTS = "entity_texts";
  static final String SCORES = "entity_scores";
  /** The outputs the client reads; {@code output_filter} leaves {@code tags} on the server. */
  static final List<String> OUTPUTS = List.of(NUM_ENTITIES, LABELS, STARTS, ENDS, TEXTS, SCORES);

  private PredictResponses() {}

  static List<Prediction> decode(PredictResponse response, List<String> texts) {
    Map<String, TensorProto> outputs = response.getOutputsMap();
    List<String> missing = OUTPUTS.stream().filter(k -> !outputs.containsKey(k)).toList();
    if (!missing.isEmpty()) {
      throw Tensors.malformed("it lacks outputs " + missing);
    }
    int rows = texts.size();
    TensorProto numTensor = outputs.get(NUM_ENTITIES);
    int[] numShape = Tensors.shape(numTensor, NUM_ENTITIES, 1);
    if (numShape[0] != rows) {
      throw Tensors.malformed(NUM_ENTITIES + " has " + numShape[0] + " rows for " + rows + " texts");
    }
    int[] counts = Tensors.int32s(numTensor, NUM_ENTITIES, rows);

    int width = Tensors.shape(outputs.get(LABELS), LABELS, 2)[1];
    for (String name : List.of(LABELS, STARTS, ENDS, TEXTS, SCORES)) {
      int[] shape = Tensors.shape(outputs.get(name), name, 2);
      if (shape[0] != rows || shape[1] != width) {
        throw Tensors.malformed(
            name + " is [" + shape[0] + ", " + shape[1] + "], expected [" + rows + ", " + width + "]");
      }
    }
    int size = rows * width;
    var labels = Tensors.strings(outputs.get(LABELS), LABELS, size);
    var entityTexts = Tensors.strings(outputs.get(TEXTS), TEXTS, size);
    int[] starts = Tensors.int32s(outputs.get(STARTS), STARTS, size);
    int[] ends = Tensors.int32s(outputs.get(ENDS), ENDS, size);
    float[] scores = Tensors.floats(outputs.get(SCORES), SCORES, size);

    OptionalLong version =
        response.getModelSpec().hasVersion()
            ? OptionalLong.of(response.getModelSpec().getVersion().getValue())
            : OptionalLong.empty();
    List<Prediction> predictions = new ArrayList<>(rows);
    for (int row = 0; row < rows; row++) {
      String text = texts.get(row);
      int count = counts[row];
      if (count < 0 || count > width) {
        throw Tensors.malformed(
            NUM_ENTITIES + "[" + row + "] is " + count + " for rows of width " + width);
      }
      int[] utf16 = count == 0 ? null : TextOffsets.utf16Indices(text);
      int codePoints = utf16 == null ? text.length() : utf16.length - 1;
      List<Entity> entities = new ArrayList<>(count);
      for (int j = 0; j < count; j++) {
        int k = row * width + j;
        int start = starts[k];
        int end = ends[k];
        if (start < 0 || start > end || end > codePoints) {
          throw Tensors.malformed(
              "entity [" + start + ", " + end + ") of text " + row + " lies outside its " + codePoints
                  + " code points");
        }
        entities.add(
            new Entity(
                labels.get(k).toStringUtf8(),
                start,
                end,
                entityTexts.get(k).toStringUtf8(),
                scores[k],
                utf16 == null ? start : utf16[start],
                utf16 == null ? end : utf16[end]));
      }
      predictions.add(new Prediction(text, entities, version));
    }
    return predictions;
  }
}
