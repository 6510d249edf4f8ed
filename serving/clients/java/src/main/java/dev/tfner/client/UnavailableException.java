package dev.tfner.client;

import io.grpc.Status;

/**
 * {@code UNAVAILABLE}: the server could not be reached, was starting or stopping, or its batch queue
 * was full (TF Serving's code for a full queue), through every retry.
 */
public class UnavailableException extends NerException {
  private static final long serialVersionUID = 1L;

  public UnavailableException(String serverMessage, int attempts, Throwable cause) {
    super(Status.Code.UNAVAILABLE, serverMessage, attempts, cause);
  }
}
