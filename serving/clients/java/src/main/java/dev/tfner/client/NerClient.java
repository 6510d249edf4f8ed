package dev.tfner.client;

import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptor;
import io.grpc.ClientInterceptors;
import io.grpc.ConnectivityState;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import tensorflow.serving.GetModelStatus.GetModelStatusResponse;
import tensorflow.serving.Model.ModelSpec;
import tensorflow.serving.Predict.PredictResponse;

/**
 * Calls a tfner model's {@code serving_default} signature on TF Serving or {@code tfner.serve}.
 *
 * <pre>{@code
 * try (NerClient client = NerClient.builder("localhost:8500").label("stable").build()) {
 *   for (Prediction p : client.predict(List.of("北京欢迎你", "他从上海来"))) {
 *     for (Entity e : p.entities()) {
 *       System.out.println(e.label() + " " + p.text().substring(e.utf16Start(), e.utf16End()));
 *     }
 *   }
 * }
 * }</pre>
 *
 * <p>Texts go out in chunks of at most {@code chunkSize}, up to {@code maxConcurrentChunks} (8)
 * at once over one HTTP/2 channel; the results come back in input order. Each call has its own
 * deadline and is retried after {@code UNAVAILABLE} (the server starting, stopping, or between
 * pods), or after a {@code CANCELLED} the client did not cause (a stopping server's), with
 * jittered exponential backoff; any other status fails at once with a {@link NerException}
 * subclass.
 *
 * <p>A client is safe to share between threads, and meant to be: it holds one channel (with its
 * connections) and one retry-timer thread. Close it when done.
 */
public final class NerClient implements AutoCloseable {
  private final ManagedChannel managedChannel;
  private final Channel channel;
  private final String model;
  private final ModelSpec spec;
  private final long timeoutNanos;
  private final int chunkSize;
  private final int maxConcurrentChunks;
  private final ScheduledThreadPoolExecutor retryScheduler;
  private final RetryingCall.Settings callSettings;
  private final AtomicBoolean closed = new AtomicBoolean();

  private NerClient(Builder b) {
    this.model = b.model;
    this.spec = Requests.modelSpec(b.model, b.version, b.label);
    this.timeoutNanos = b.timeout.toNanos();
    this.chunkSize = b.chunkSize;
    this.maxConcurrentChunks = b.maxConcurrentChunks;
    String target = b.target;
    if (b.loadBalancing == LoadBalancing.ROUND_ROBIN && !target.contains(":/")) {
      // round_robin spreads calls over the addresses the name resolver returns; a bare host:port
      // reaches the DNS resolver only as a fallback of URI parsing, so name it outright.
      target = "dns:///" + target;
    }
    ManagedChannelBuilder<?> builder =
        Grpc.newChannelBuilder(target, b.credentials)
            .defaultLoadBalancingPolicy(b.loadBalancing.policy())
            .maxInboundMessageSize(b.maxInboundMessageBytes)
            .userAgent("tfner-client-java");
    this.managedChannel = builder.build();
    this.channel = ClientInterceptors.intercept(managedChannel, b.interceptors);
    this.retryScheduler = new ScheduledThreadPoolExecutor(1, runnable -> {
      Thread thread = new Thread(runnable, "tfner-client-retry");
      thread.setDaemon(true);
      return thread;
    });
    this.retryScheduler.setRemoveOnCancelPolicy(true);
    this.callSettings =
        new RetryingCall.Settings(
            channel,
            timeoutNanos,
            new RetryPolicy(b.retries, b.baseBackoff, b.maxBackoff),
            retryScheduler,
            this::reconnectIfFailing,
            closed::get);
  }

  /**
   * A builder for a client of the server at {@code target}.
   *
   * @param target {@code host:port} (e.g. {@code localhost:8500}), or any gRPC target URI such as
   *     {@code dns:///tfner-serving.default.svc:8500}
   */
  public static Builder builder(String target) {
    return new Builder(target);
  }

  /**
   * Finds the entities of each text, blocking until all chunks are answered.
   *
   * @param texts the texts; each may be empty, none may be null or hold a lone surrogate
   * @return one {@link Prediction} per text, in input order
   * @throws IllegalArgumentException if a text holds a lone UTF-16 surrogate (names its index)
   * @throws NerException if a chunk failed: the server refused it, or stayed unavailable through
   *     every retry. The other chunks are cancelled.
   */
  public List<Prediction> predict(List<String> texts) {
    return await(predictAsync(texts));
  }

  /**
   * Like {@link #predict}, without blocking: the future completes when every chunk is answered, or
   * fails with the first chunk's {@link NerException}. Cancelling it cancels the calls in flight.
   * Dependent stages run on gRPC's threads unless given an executor: do not block in them.
   *
   * @throws IllegalArgumentException at once, if a text holds a lone UTF-16 surrogate
   * @throws IllegalStateException if the client is closed
   */
  public CompletableFuture<List<Prediction>> predictAsync(List<String> texts) {
    List<String> input = List.copyOf(checkTexts(texts));
    if (input.isEmpty()) {
      return CompletableFuture.completedFuture(List.of());
    }
    int chunks = (input.size() + chunkSize - 1) / chunkSize;
    List<CompletableFuture<PredictResponse>> calls = new CopyOnWriteArrayList<>();
    List<CompletableFuture<List<Prediction>>> results = new ArrayList<>(chunks);
    for (int i = 0; i < chunks; i++) {
      results.add(new CompletableFuture<>());
    }
    CompletableFuture<List<Prediction>> all = allInOrder(results);
    // At most maxConcurrentChunks calls in flight: each answered chunk starts the next one. All at
    // once would fill a batching server's queue (UNAVAILABLE) and let the last chunks'
    // deadlines run out while they wait behind the first ones.
    AtomicInteger next = new AtomicInteger();
    Runnable launchNext = new Runnable() {
      @Override
      public void run() {
        int i = next.getAndIncrement();
        if (i >= chunks || all.isDone()) {
          return;
        }
        int begin = i * chunkSize;
        List<String> chunk = input.subList(begin, Math.min(input.size(), begin + chunkSize));
        CompletableFuture<PredictResponse> call =
            RetryingCall.start(callSettings, TfServingMethods.PREDICT, Requests.predict(spec, chunk));
        calls.add(call);
        if (all.isDone()) {
          call.cancel(false); // Lost the race with a failure or the caller's cancel().
        }
        call.thenApply(response -> PredictResponses.decode(response, chunk))
            .whenComplete((predictions, error) -> {
              if (error != null) {
                results.get(i).completeExceptionally(unwrap(error));
              } else {
                results.get(i).complete(predictions);
                run();
              }
            });
      }
    };
    for (int k = 0; k < Math.min(chunks, maxConcurrentChunks); k++) {
      launchNext.run();
    }
    // On the first failure, or if the caller cancels, stop the calls still running (cancelling a
    // dependent stage would not reach them); chunks not yet started never start.
    all.whenComplete((predictions, error) -> {
      if (error != null) {
        calls.forEach(call -> call.cancel(false));
      }
    });
    return all;
  }

  /**
   * The state of every version of the model (not only the one this client pins), from {@code
   * ModelService.GetModelStatus}, with the same deadline and retries as {@link #predict}.
   *
   * @throws NotFoundException if the server has no model of this client's name
   */
  public List<ModelVersionStatus> status() {
    requireOpen();
    GetModelStatusResponse response =
        await(RetryingCall.start(callSettings, TfServingMethods.GET_MODEL_STATUS, Requests.status(model)));
    return response.getModelVersionStatusList().stream()
        .map(s -> new ModelVersionStatus(
            s.getVersion(), state(s.getState().name()), s.getStatus().getErrorMessage()))
        .toList();
  }

  /**
   * Stops the client: no new calls start, and retries waiting for their turn fail at once. Calls
   * in flight get up to this client's timeout to finish, then are cancelled. Idempotent.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    managedChannel.shutdown();
    // Run the waiting retries now: each fails its call, saying the client was closed, instead of
    // leaving it unfinished for good. shutdown(), not shutdownNow(): a task that a stopped executor
    // hands back only cancels itself when run.
    retryScheduler.shutdown();
    for (Runnable waiting : retryScheduler.getQueue().toArray(new Runnable[0])) {
      if (retryScheduler.remove(waiting)) { // Else the scheduler's thread got to it first.
        waiting.run();
      }
    }
    try {
      if (!managedChannel.awaitTermination(timeoutNanos, TimeUnit.NANOSECONDS)) {
        managedChannel.shutdownNow().awaitTermination(1, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      managedChannel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  private void requireOpen() {
    if (closed.get()) {
      throw new IllegalStateException("this NerClient is closed; build a new one");
    }
  }

  /**
   * Before a retry: if the channel has given up on its connection for now, try again at once. gRPC
   * waits out a reconnect backoff of its own (1 s growing 1.6x to 2 min) and meanwhile fails every
   * call at once, so a retry would not even try a server that came back; the client's jittered
   * retry backoff already paces the attempts. Also makes a DNS target resolve again (new pods).
   */
  private void reconnectIfFailing() {
    if (managedChannel.getState(false) == ConnectivityState.TRANSIENT_FAILURE) {
      managedChannel.resetConnectBackoff();
    }
  }

  private List<String> checkTexts(List<String> texts) {
    requireOpen();
    Objects.requireNonNull(texts, "texts");
    TextOffsets.requireWellFormed(texts);
    return texts;
  }

  /** Completes with the chunks' results in order, or fails as soon as one chunk fails. */
  private static CompletableFuture<List<Prediction>> allInOrder(
      List<CompletableFuture<List<Prediction>>> chunks) {
    CompletableFuture<List<Prediction>> all = new CompletableFuture<>();
    AtomicInteger pending = new AtomicInteger(chunks.size());
    for (CompletableFuture<List<Prediction>> chunk : chunks) {
      chunk.whenComplete((predictions, error) -> {
        if (error != null) {
          all.completeExceptionally(unwrap(error));
        } else if (pending.decrementAndGet() == 0) {
          List<Prediction> ordered = new ArrayList<>();
          chunks.forEach(done -> ordered.addAll(done.join()));
          all.complete(ordered);
        }
      });
    }
    return all;
  }

  private static <T> T await(CompletableFuture<T> future) {
    try {
      return future.get();
    } catch (ExecutionException e) {
      Throwable cause = unwrap(e.getCause());
      if (cause instanceof RuntimeException runtime) {
        throw runtime;
      }
      throw new NerException(Status.Code.UNKNOWN, String.valueOf(cause), 1, cause);
    } catch (InterruptedException e) {
      future.cancel(false);
      Thread.currentThread().interrupt();
      throw new NerException(Status.Code.CANCELLED, "interrupted while waiting for the server", 1, e);
    }
  }

  private static Throwable unwrap(Throwable error) {
    return error instanceof CompletionException && error.getCause() != null ? error.getCause() : error;
  }

  private static ModelVersionStatus.State state(String name) {
    try {
      return ModelVersionStatus.State.valueOf(name);
    } catch (IllegalArgumentException newerServer) {
      return ModelVersionStatus.State.UNKNOWN;
    }
  }

  /** Settings of a {@link NerClient}; every one has a default but the target. */
  public static final class Builder {
    private final String target;
    private String model = "ner";
    private Long version;
    private String label;
    private Duration timeout = Duration.ofSeconds(10);
    private int retries = 3;
    private Duration baseBackoff = Duration.ofMillis(100);
    private Duration maxBackoff = Duration.ofSeconds(2);
    private int chunkSize = 16;
    private int maxConcurrentChunks = 8;
    private ChannelCredentials credentials = InsecureChannelCredentials.create();
    private LoadBalancing loadBalancing = LoadBalancing.PICK_FIRST;
    private int maxInboundMessageBytes = 64 * 1024 * 1024;
    private final List<ClientInterceptor> interceptors = new ArrayList<>();

    private Builder(String target) {
      this.target = Objects.requireNonNull(target, "target");
      if (target.isBlank()) {
        throw new IllegalArgumentException("target is empty; pass host:port, e.g. localhost:8500");
      }
    }

    /** The model name ({@code model_spec.name}). Default {@code "ner"}. */
    public Builder model(String model) {
      this.model = Objects.requireNonNull(model, "model");
      return this;
    }

    /** Pins one model version. Excludes {@link #label}. Default: the server's latest. */
    public Builder version(long version) {
      this.version = version;
      return this;
    }

    /** Pins a version label, e.g. {@code "stable"} or {@code "canary"}. Excludes {@link #version}. */
    public Builder label(String label) {
      this.label = Objects.requireNonNull(label, "label");
      return this;
    }

    /** The deadline of each call (each attempt, when retried). Default 10 s. */
    public Builder timeout(Duration timeout) {
      this.timeout = Objects.requireNonNull(timeout, "timeout");
      return this;
    }

    /**
     * How many times a call is retried after {@code UNAVAILABLE} (or a server's {@code
     * CANCELLED}). Default 3; 0 turns retries off.
     */
    public Builder retries(int retries) {
      this.retries = retries;
      return this;
    }

    /**
     * The backoff between retries: retry n waits a random time up to {@code min(max, base *
     * 2^n)} ("full jitter"). Default 100 ms and 2 s.
     */
    public Builder backoff(Duration base, Duration max) {
      this.baseBackoff = Objects.requireNonNull(base, "base");
      this.maxBackoff = Objects.requireNonNull(max, "max");
      return this;
    }

    /**
     * The most texts per call. Default 16; keep it at most the server's {@code
     * --max_texts_per_request} (and its batching {@code max_batch_size}), and chunk size times
     * the longest text under its {@code --max_chars_per_request}.
     */
    public Builder chunkSize(int chunkSize) {
      this.chunkSize = chunkSize;
      return this;
    }

    /**
     * The most calls one {@code predict} has in flight at once; each answered chunk starts the
     * next. Default 8, as in the Python and Node.js clients.
     */
    public Builder maxConcurrentChunks(int maxConcurrentChunks) {
      this.maxConcurrentChunks = maxConcurrentChunks;
      return this;
    }

    /** Plaintext HTTP/2 (the default), as inside a cluster or on loopback. */
    public Builder plaintext() {
      this.credentials = InsecureChannelCredentials.create();
      return this;
    }

    /** TLS, trusting the JVM's default certificate authorities. */
    public Builder tls() {
      this.credentials = TlsChannelCredentials.create();
      return this;
    }

    /** TLS, trusting the CA certificates in a PEM file (e.g. a private CA's). */
    public Builder tls(Path trustedCertificatesPem) {
      try {
        this.credentials =
            TlsChannelCredentials.newBuilder().trustManager(trustedCertificatesPem.toFile()).build();
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read CA certificates from " + trustedCertificatesPem, e);
      }
      return this;
    }

    /** Any gRPC channel credentials (mutual TLS, a call-credentials composite, ...). */
    public Builder credentials(ChannelCredentials credentials) {
      this.credentials = Objects.requireNonNull(credentials, "credentials");
      return this;
    }

    /** How calls spread over the target's addresses. Default {@link LoadBalancing#PICK_FIRST}. */
    public Builder loadBalancing(LoadBalancing loadBalancing) {
      this.loadBalancing = Objects.requireNonNull(loadBalancing, "loadBalancing");
      return this;
    }

    /** The largest response accepted. Default 64 MiB. */
    public Builder maxInboundMessageBytes(int bytes) {
      this.maxInboundMessageBytes = bytes;
      return this;
    }

    /**
     * Adds an interceptor to every call (auth headers, tracing, metrics). Interceptors run in the
     * order added; each retry attempt goes through them again.
     */
    public Builder intercept(ClientInterceptor interceptor) {
      this.interceptors.add(0, Objects.requireNonNull(interceptor, "interceptor"));
      return this;
    }

    /**
     * Opens the channel (connections are made on the first call, so this does not fail when the
     * server is down).
     *
     * @throws IllegalArgumentException for an invalid setting, saying which
     */
    public NerClient build() {
      if (version != null && label != null) {
        throw new IllegalArgumentException(
            "pin either a version (" + version + ") or a label (\"" + label + "\"), not both");
      }
      if (model.isEmpty()) {
        throw new IllegalArgumentException("model name is empty");
      }
      if (chunkSize < 1) {
        throw new IllegalArgumentException("chunkSize must be >= 1, got " + chunkSize);
      }
      if (maxConcurrentChunks < 1) {
        throw new IllegalArgumentException("maxConcurrentChunks must be >= 1, got " + maxConcurrentChunks);
      }
      if (timeout.isNegative() || timeout.isZero()) {
        throw new IllegalArgumentException("timeout must be > 0, got " + timeout);
      }
      if (maxInboundMessageBytes < 1) {
        throw new IllegalArgumentException(
            "maxInboundMessageBytes must be >= 1, got " + maxInboundMessageBytes);
      }
      new RetryPolicy(retries, baseBackoff, maxBackoff); // Validates them.
      return new NerClient(this);
    }
  }
}
