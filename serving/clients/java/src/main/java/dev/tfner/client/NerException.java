package dev.tfner.client;

import io.grpc.Status;

/**
 * A call the server refused, or that could not reach it.
 *
 * <p>The subclasses name the gRPC status classes a caller handles differently; any other status
 * comes as a plain {@code NerException}. {@link #serverMessage()} is the server's own description
 * (e.g. which limit a request broke).
 */
public class NerException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final Status.Code code;
  private final String serverMessage;
  private final int attempts;

  /**
   * @param code the gRPC status code
   * @param serverMessage the status description, or the transport error when there is none
   * @param attempts how many times the call was sent (retries included)
   * @param cause the gRPC exception, if any
   */
  public NerException(Status.Code code, String serverMessage, int attempts, Throwable cause) {
    super(code + ": " + serverMessage + (attempts > 1 ? " (after " + attempts + " attempts)" : ""), cause);
    this.code = code;
    this.serverMessage = serverMessage;
    this.attempts = attempts;
  }

  /** The gRPC status code, e.g. {@code NOT_FOUND}. */
  public Status.Code code() {
    return code;
  }

  /** What the server (or the transport, for a call that never reached it) said. */
  public String serverMessage() {
    return serverMessage;
  }

  /**
   * How many times the call was sent: 1 plus the retries spent on {@code UNAVAILABLE} (or a
   * server's {@code CANCELLED}).
   */
  public int attempts() {
    return attempts;
  }

  /** The exception class for a gRPC status: the subclass of its status class, or this one. */
  static NerException from(Status status, int attempts) {
    String message = status.getDescription() == null ? "" : status.getDescription();
    if (status.getCause() != null) {
      // A transport failure (refused connection, TLS handshake) says "io exception" at best; what
      // went wrong is in the cause.
      Throwable root = status.getCause();
      while (root.getCause() != null && root.getCause() != root) {
        root = root.getCause();
      }
      message = message.isEmpty() ? root.toString() : message + " (" + root + ")";
    }
    if (message.isEmpty()) {
      message = "(no message)";
    }
    Throwable cause = status.asRuntimeException();
    return switch (status.getCode()) {
      case NOT_FOUND -> new NotFoundException(message, attempts, cause);
      case INVALID_ARGUMENT -> new InvalidArgumentException(message, attempts, cause);
      case UNAVAILABLE -> new UnavailableException(message, attempts, cause);
      case DEADLINE_EXCEEDED -> new DeadlineExceededException(message, attempts, cause);
      case RESOURCE_EXHAUSTED -> new ResourceExhaustedException(message, attempts, cause);
      default -> new NerException(status.getCode(), message, attempts, cause);
    };
  }
}
