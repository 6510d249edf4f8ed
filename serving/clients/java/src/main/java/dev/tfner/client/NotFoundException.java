package dev.tfner.client;

import io.grpc.Status;

/** {@code NOT_FOUND}: no such model, version, version label or signature on the server. */
public class NotFoundException extends NerException {
  private static final long serialVersionUID = 1L;

  public NotFoundException(String serverMessage, int attempts, Throwable cause) {
    super(Status.Code.NOT_FOUND, serverMessage, attempts, cause);
  }
}
