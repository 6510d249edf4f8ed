package dev.tfner.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.MethodDescriptor;
import java.util.concurrent.atomic.AtomicInteger;

/** Counts the calls (attempts) a client sends, through its public interceptor option. */
final class CallCounter implements ClientInterceptor {
  private final AtomicInteger calls = new AtomicInteger();

  @Override
  public <ReqT, RespT> ClientCall<ReqT, RespT> interceptCall(
      MethodDescriptor<ReqT, RespT> method, CallOptions options, Channel next) {
    calls.incrementAndGet();
    return next.newCall(method, options);
  }

  int calls() {
    return calls.get();
  }
}
