package dev.tfner.client;

import io.grpc.Status;

/**
 * {@code INVALID_ARGUMENT}: the server refused the request itself, e.g. more texts than its {@code
 * --max_texts_per_request} (lower the chunk size) or a text over {@code --max_chars_per_text}.
 */
public class InvalidArgumentException extends NerException {
  private static final long serialVersionUID = 1L;

  public InvalidArgumentException(String serverMessage, int attempts, Throwable cause) {
    super(Status.Code.INVALID_ARGUMENT, serverMessage, attempts, cause);
  }
}
