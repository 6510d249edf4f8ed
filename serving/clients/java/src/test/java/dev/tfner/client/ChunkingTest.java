package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** Large inputs go out in chunks, concurrently, and come back in input order. */
class ChunkingTest {

  @Test
  void hundredTextsGoOutInChunksAndComeBackInOrder() {
    List<ParityCase> cases = new ArrayList<>();
    for (int i = 0; cases.size() < 100; i++) {
      cases.add(TestEnv.parity().get(i % TestEnv.parity().size()));
    }
    CallCounter counter = new CallCounter();
    try (NerClient client = TestEnv.client().chunkSize(16).intercept(counter).build()) {
      List<Prediction> predictions = client.predict(cases.stream().map(ParityCase::text).toList());

      assertEquals(7, counter.calls(), "100 texts in chunks of 16 = 7 calls");
      assertEquals(100, predictions.size());
      for (int i = 0; i < cases.size(); i++) {
        assertEquals(List.of(), cases.get(i).mismatches(predictions.get(i)), "text " + i);
      }
    }
  }

  @Test
  void atMostEightChunksAreInFlightAtOnce() {
    AtomicInteger inFlight = new AtomicInteger();
    AtomicInteger mostInFlight = new AtomicInteger();
    ClientInterceptor gauge = new ClientInterceptor() {
      @Override
      public <ReqT, RespT> ClientCall<ReqT, RespT> interceptCall(
          MethodDescriptor<ReqT, RespT> method, CallOptions options, Channel next) {
        return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
          @Override
          public void start(Listener<RespT> listener, Metadata headers) {
            mostInFlight.accumulateAndGet(inFlight.incrementAndGet(), Math::max);
            // A unary call is answered at its response message (the client completes the chunk
            // there), or at its close when it fails.
            AtomicBoolean answered = new AtomicBoolean();
            super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
              @Override
              public void onMessage(RespT message) {
                if (answered.compareAndSet(false, true)) {
                  inFlight.decrementAndGet();
                }
                super.onMessage(message);
              }

              @Override
              public void onClose(Status status, Metadata trailers) {
                if (answered.compareAndSet(false, true)) {
                  inFlight.decrementAndGet();
                }
                super.onClose(status, trailers);
              }
            }, headers);
          }
        };
      }
    };
    List<String> texts = new ArrayList<>();
    for (int i = 0; i < 400; i++) {
      texts.add(i + "号张三在北京工作。");
    }
    try (NerClient client = TestEnv.client().chunkSize(16).intercept(gauge).build()) {
      List<Prediction> predictions = client.predict(texts);
      assertEquals(texts, predictions.stream().map(Prediction::text).toList());
      assertTrue(mostInFlight.get() <= 8, "at most 8 calls in flight, saw " + mostInFlight.get());
    }
  }

  @Test
  void chunksOfOneKeepTheOrderToo() {
    List<String> texts = List.of("张三在北京工作。", "", "李四去了上海。", "😀", "王五在广州市天河区上班");
    CallCounter counter = new CallCounter();
    try (NerClient client = TestEnv.client().chunkSize(1).intercept(counter).build()) {
      List<Prediction> predictions = client.predict(texts);
      assertEquals(texts, predictions.stream().map(Prediction::text).toList());
      assertEquals(texts.size(), counter.calls());
    }
  }

  @Test
  void cancellingTheFutureCancelsTheCallsInFlight() throws InterruptedException {
    AtomicInteger cancelled = new AtomicInteger();
    ClientInterceptor countCancels = new ClientInterceptor() {
      @Override
      public <ReqT, RespT> ClientCall<ReqT, RespT> interceptCall(
          MethodDescriptor<ReqT, RespT> method, CallOptions options, Channel next) {
        return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
          @Override
          public void cancel(String message, Throwable cause) {
            cancelled.incrementAndGet();
            super.cancel(message, cause);
          }
        };
      }
    };
    // Long enough that no call is answered before cancel(), short enough not to keep the server busy.
    String text = "张三在北京工作，李四去了上海。".repeat(40);
    try (NerClient client = TestEnv.client().chunkSize(1).intercept(countCancels).build()) {
      CompletableFuture<List<Prediction>> future = client.predictAsync(Collections.nCopies(3, text));
      assertTrue(future.cancel(true));
      assertEquals(3, cancelled.get(), "every chunk's call was cancelled");
      // The client is still usable afterwards.
      assertEquals(1, client.predict(List.of("北京")).size());
    }
  }

  @Test
  void noTextsMakeNoCall() {
    CallCounter counter = new CallCounter();
    try (NerClient client = TestEnv.client().intercept(counter).build()) {
      assertTrue(client.predict(List.of()).isEmpty());
      assertEquals(0, counter.calls());
    }
  }
}
