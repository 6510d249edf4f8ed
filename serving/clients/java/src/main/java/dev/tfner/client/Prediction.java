package dev.tfner.client;

import java.util.List;
import java.util.OptionalLong;

/**
 * The entities of one input text.
 *
 * @param text the text as it was passed in
 * @param entities its entities, in the order of their offsets
 * @param modelVersion the model version that answered (from the response's {@code model_spec});
 *     empty if the server did not say. Texts of one {@code predict} call that went out in different
 *     chunks may be answered by different versions while a new version rolls out.
 */
public record Prediction(String text, List<Entity> entities, OptionalLong modelVersion) {
  public Prediction {
    entities = List.copyOf(entities);
  }
}
