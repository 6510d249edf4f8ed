package dev.tfner.client;

import io.grpc.Status;

/** {@code DEADLINE_EXCEEDED}: a call took longer than the client's timeout. */
public class DeadlineExceededException extends NerException {
  private static final long serialVersionUID = 1L;

  public DeadlineExceededException(String serverMessage, int attempts, Throwable cause) {
    super(Status.Code.DEADLINE_EXCEEDED, serverMessage, attempts, cause);
  }
}
