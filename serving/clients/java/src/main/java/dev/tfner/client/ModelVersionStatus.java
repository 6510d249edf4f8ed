package dev.tfner.client;

/**
 * The state of one version of a served model, as {@code ModelService.GetModelStatus} reports it.
 *
 * @param version the version number
 * @param state where the version is in its life cycle
 * @param errorMessage why the version failed (e.g. to load); empty when it did not
 */
public record ModelVersionStatus(long version, State state, String errorMessage) {

  /** TF Serving's {@code ModelVersionStatus.State}, in life-cycle order. */
  public enum State {
    UNKNOWN,
    START,
    LOADING,
    /** Serving requests. */
    AVAILABLE,
    UNLOADING,
    END
  }
}
