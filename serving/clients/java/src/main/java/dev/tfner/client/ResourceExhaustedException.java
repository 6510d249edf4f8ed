package dev.tfner.client;

import io.grpc.Status;

/**
 * {@code RESOURCE_EXHAUSTED}: one call held more characters than the server's {@code
 * --max_chars_per_request} (lower the chunk size).
 */
public class ResourceExhaustedException extends NerException {
  private static final long serialVersionUID = 1L;

  public ResourceExhaustedException(String serverMessage, int attempts, Throwable cause) {
    super(Status.Code.RESOURCE_EXHAUSTED, serverMessage, attempts, cause);
  }
}
