package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.Context;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.ServerCalls;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import tensorflow.serving.Predict.PredictRequest;
import tensorflow.serving.Predict.PredictResponse;

/**
 * A {@code CANCELLED} the server sent is retried (a stopping server cancels the calls it accepted
 * but never ran); one the client or its caller caused is not. Against a stub PredictionService on
 * grpc-java's own server, on loopback: no tfner server needed. Also: closing the client fails a call
 * that waits to be retried.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class ServerCancelledTest {
  /** Longer than any retry of these clients' 1 ms backoff would take to arrive. */
  private static final long QUIET_MS = 300;

  private final Queue<PredictRequest> calls = new ConcurrentLinkedQueue<>();
  private Server server;

  @AfterEach
  void stopServer() throws InterruptedException {
    if (server != null) {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void aCallTheServerCancelledIsRetried() throws IOException {
    // The retry reaches whatever answers next: here the same stub, which refuses the second call
    // with NOT_FOUND so that the test can tell.
    start((request, response) -> {
      calls.add(request);
      if (calls.size() == 1) {
        response.onError(Status.CANCELLED.withDescription("CANCELLED").asRuntimeException());
      } else {
        response.onError(Status.NOT_FOUND.withDescription("second call").asRuntimeException());
      }
    });
    try (NerClient client = client().build()) {
      NotFoundException e = assertThrows(NotFoundException.class, () -> client.predict(List.of("北京")));
      assertTrue(e.serverMessage().contains("second call"), e.getMessage());
      assertEquals(2, e.attempts());
    }
    List<PredictRequest> seen = List.copyOf(calls);
    assertEquals(2, seen.size());
    assertEquals(seen.get(0), seen.get(1), "the retry sends the same request");
  }

  @Test
  void theChunksTheClientCancelsAfterAFailureAreNotRetried() throws Exception {
    // Chunk "block" is never answered; chunk "fail" is refused once "block" has arrived, and the
    // client then cancels "block": that CANCELLED is the client's own.
    CountDownLatch blockArrived = new CountDownLatch(1);
    CountDownLatch blockCancelled = new CountDownLatch(1);
    start((request, response) -> {
      calls.add(request);
      if (text(request).equals("block")) {
        ((ServerCallStreamObserver<PredictResponse>) response).setOnCancelHandler(blockCancelled::countDown);
        blockArrived.countDown();
        return;
      }
      await(blockArrived);
      response.onError(Status.INVALID_ARGUMENT.withDescription("refused").asRuntimeException());
    });
    try (NerClient client = client().chunkSize(1).build()) {
      InvalidArgumentException e =
          assertThrows(InvalidArgumentException.class, () -> client.predict(List.of("fail", "block")));
      assertEquals(1, e.attempts());
      assertTrue(blockCancelled.await(10, TimeUnit.SECONDS), "the server saw chunk \"block\" cancelled");
      Thread.sleep(QUIET_MS);
    }
    assertEquals(List.of("block", "fail"), calls.stream().map(ServerCancelledTest::text).sorted().toList(),
        "each chunk reached the server once");
  }

  @Test
  void aCallTheCallersContextCancelledIsNotRetried() throws Exception {
    // A caller inside a gRPC service cancels its calls by cancelling its io.grpc.Context (as gRPC
    // does when the caller's own incoming call is cancelled).
    CountDownLatch arrived = new CountDownLatch(1);
    CountDownLatch cancelled = new CountDownLatch(1);
    start((request, response) -> {
      calls.add(request);
      ((ServerCallStreamObserver<PredictResponse>) response).setOnCancelHandler(cancelled::countDown);
      arrived.countDown();
    });
    try (NerClient client = client().build()) {
      Context.CancellableContext context = Context.current().withCancellation();
      CompletableFuture<List<Prediction>> future = context.call(() -> client.predictAsync(List.of("北京")));
      await(arrived);
      context.cancel(null);
      CompletionException e = assertThrows(CompletionException.class, future::join);
      assertEquals(Status.Code.CANCELLED, ((NerException) e.getCause()).code(), e.toString());
      assertTrue(cancelled.await(10, TimeUnit.SECONDS), "the server saw the call cancelled");
      Thread.sleep(QUIET_MS);
    }
    assertEquals(1, calls.size(), "the call reached the server once");
  }

  @Test
  void closingTheClientFailsACallWaitingOutItsBackoff() throws Exception {
    start((request, response) -> {
      calls.add(request);
      response.onError(Status.UNAVAILABLE.withDescription("starting").asRuntimeException());
    });
    // Counts down once the client has handled a failed attempt, i.e. scheduled its retry.
    CountDownLatch failed = new CountDownLatch(1);
    ClientInterceptor afterFailure = new ClientInterceptor() {
      @Override
      public <ReqT, RespT> ClientCall<ReqT, RespT> interceptCall(
          MethodDescriptor<ReqT, RespT> method, CallOptions options, Channel next) {
        return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
          @Override
          public void start(Listener<RespT> listener, Metadata headers) {
            super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
              @Override
              public void onClose(Status status, Metadata trailers) {
                super.onClose(status, trailers);
                failed.countDown();
              }
            }, headers);
          }
        };
      }
    };
    NerClient client = client().backoff(Duration.ofMinutes(1), Duration.ofMinutes(1)).intercept(afterFailure).build();
    CompletableFuture<List<Prediction>> future = client.predictAsync(List.of("北京"));
    await(failed);
    client.close();
    // The waiting retry fails at once, saying why, instead of leaving the call unfinished for good.
    ExecutionException e = assertThrows(ExecutionException.class, () -> future.get(10, TimeUnit.SECONDS));
    NerException refused = assertInstanceOf(NerException.class, e.getCause(), e.toString());
    assertEquals(Status.Code.CANCELLED, refused.code());
    assertTrue(refused.getMessage().contains("the client was closed before retry 1"), refused.getMessage());
  }

  private NerClient.Builder client() {
    return NerClient.builder("127.0.0.1:" + server.getPort())
        .retries(3)
        .backoff(Duration.ofMillis(1), Duration.ofMillis(1));
  }

  /** Serves {@code tensorflow.serving.PredictionService} with {@code predict} on a loopback port. */
  private void start(ServerCalls.UnaryMethod<PredictRequest, PredictResponse> predict) throws IOException {
    ServerServiceDefinition service =
        ServerServiceDefinition.builder(TfServingMethods.PREDICT.getServiceName())
            .addMethod(TfServingMethods.PREDICT, ServerCalls.asyncUnaryCall(predict))
            .build();
    server =
        NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0), InsecureServerCredentials.create())
            .addService(service)
            .build()
            .start();
  }

  private static String text(PredictRequest request) {
    return request.getInputsOrThrow(Requests.INPUT).getStringVal(0).toStringUtf8();
  }

  private static void await(CountDownLatch latch) {
    try {
      if (!latch.await(10, TimeUnit.SECONDS)) {
        throw new AssertionError("timed out waiting on the stub server");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError(e);
    }
  }
}
