package dev.tfner.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.Context;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * One unary call, sent again after {@code UNAVAILABLE} (or a {@code CANCELLED} the client did not
 * cause) as the {@link RetryPolicy} says, without blocking a thread: each attempt is an asynchronous
 * gRPC call with its own deadline, and a retry is a task on the scheduler. Any other status, or
 * running out of retries, fails the future with the {@link NerException} of that status.
 * Cancelling the future cancels the attempt in flight.
 */
final class RetryingCall<ReqT, RespT> {
  /**
   * What every call of one client shares.
   *
   * @param channel where calls go
   * @param timeoutNanos the deadline of each attempt
   * @param policy when to retry
   * @param scheduler runs the retries when their wait is over
   * @param beforeRetry runs just before each retry is sent
   * @param closed whether the client was closed
   */
  record Settings(
      Channel channel,
      long timeoutNanos,
      RetryPolicy policy,
      ScheduledExecutorService scheduler,
      Runnable beforeRetry,
      BooleanSupplier closed) {}

  private final Settings settings;
  private final MethodDescriptor<ReqT, RespT> method;
  private final ReqT request;
  private final CompletableFuture<RespT> result = new CompletableFuture<>();
  // The caller's gRPC context, which the first attempt is bound to: cancelling it cancels the call.
  private final Context callerContext = Context.current();
  // The attempt in flight, or the retry waiting; volatile because cancel() comes from any thread.
  private volatile ClientCall<ReqT, RespT> inFlight;
  private volatile Future<?> pendingRetry;

  private RetryingCall(Settings settings, MethodDescriptor<ReqT, RespT> method, ReqT request) {
    this.settings = settings;
    this.method = method;
    this.request = request;
  }

  /** Starts the call; the future completes with the response or a {@link NerException}. */
  static <ReqT, RespT> CompletableFuture<RespT> start(
      Settings settings, MethodDescriptor<ReqT, RespT> method, ReqT request) {
    RetryingCall<ReqT, RespT> call = new RetryingCall<>(settings, method, request);
    call.result.whenComplete((response, error) -> {
      if (call.result.isCancelled()) {
        call.cancel();
      }
    });
    call.attempt(0);
    return call.result;
  }

  private void attempt(int retry) {
    if (result.isDone()) {
      return;
    }
    try {
      if (retry > 0) {
        settings.beforeRetry().run();
      }
      // The deadline is per attempt: a retry gets the full timeout again.
      ClientCall<ReqT, RespT> call =
          settings.channel().newCall(
              method, CallOptions.DEFAULT.withDeadlineAfter(settings.timeoutNanos(), TimeUnit.NANOSECONDS));
      inFlight = call;
      ClientCalls.asyncUnaryCall(call, request, new StreamObserver<RespT>() {
        @Override
        public void onNext(RespT response) {
          result.complete(response);
        }

        @Override
        public void onError(Throwable error) {
          failed(Status.fromThrowable(error), retry);
        }

        @Override
        public void onCompleted() {}
      });
      if (result.isCancelled()) {
        call.cancel("cancelled by the caller", null); // Lost the race with cancel().
      }
    } catch (RuntimeException e) {
      // E.g. an interceptor that threw. On the retry thread nobody else would see it.
      result.completeExceptionally(e);
    }
  }

  private void failed(Status status, int retry) {
    boolean retryable =
        (status.getCode() == Status.Code.UNAVAILABLE || cancelledByServer(status))
            && retry < settings.policy().retries();
    if (!retryable || result.isDone()) {
      result.completeExceptionally(NerException.from(status, retry + 1));
      return;
    }
    try {
      pendingRetry =
          settings.scheduler().schedule(
              () -> {
                // close() runs the waiting retries at once: they must not be sent.
                if (settings.closed().getAsBoolean()) {
                  result.completeExceptionally(closedBeforeRetry(status, retry));
                } else {
                  attempt(retry + 1);
                }
              },
              settings.policy().delayNanos(retry),
              TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException closed) {
      result.completeExceptionally(closedBeforeRetry(status, retry));
    }
  }

  /**
   * The failure of a call whose retry will not be sent because the client was closed: CANCELLED, as
   * in the Go, Node.js and Python clients, with the last attempt's status in the message.
   */
  private static NerException closedBeforeRetry(Status status, int retry) {
    Status refused = Status.CANCELLED.withDescription(
        "the client was closed before retry " + (retry + 1) + "; attempt " + (retry + 1) + " ended in "
            + status.getCode() + ": " + status.getDescription());
    return NerException.from(refused, retry + 1);
  }

  /**
   * Whether {@code status} is a {@code CANCELLED} that this client did not cause. Only {@code
   * UNAVAILABLE} otherwise means "nobody answered, the same call may succeed later": any other
   * status is the server's verdict on the request. But a server that stops cancels the calls gRPC
   * had accepted but not yet handed to a handler, so they never ran, and both RPCs the client sends
   * are read-only: such a call is retried like {@code UNAVAILABLE}. A cancellation of the client's
   * own is final: the future cancelled (by the caller, by an interrupted {@code predict}, or by
   * {@code predictAsync} stopping the other chunks after one failed), the caller's gRPC context
   * cancelled, or the client closed.
   */
  private boolean cancelledByServer(Status status) {
    return status.getCode() == Status.Code.CANCELLED
        && !result.isDone()
        && !callerContext.isCancelled()
        && !settings.closed().getAsBoolean();
  }

  private void cancel() {
    Future<?> retry = pendingRetry;
    if (retry != null) {
      retry.cancel(false);
    }
    ClientCall<ReqT, RespT> call = inFlight;
    if (call != null) {
      call.cancel("cancelled by the caller", null);
    }
  }
}
