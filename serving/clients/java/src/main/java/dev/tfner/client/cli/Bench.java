package dev.tfner.client.cli;

import dev.tfner.client.NerClient;
import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The benchmark mode of {@link Main}, driven by benchmarks/client_load.py: N Predict calls of one
 * text each from C threads sharing one client (closed loop: each thread sends its next call when
 * the last one is answered), and one JSON line of figures.
 *
 * <p>Latency percentiles and texts/s count the calls that succeeded; CPU is the whole process's
 * user + system time during the timed phase (gRPC's and the JIT's threads included), per request.
 */
final class Bench {
  private static final int WARMUP_CALLS_PER_CALLER = 50;

  private Bench() {}

  static int run(NerClient client, Options options, PrintStream out, PrintStream err) throws IOException {
    List<String> texts;
    try {
      texts = Files.readAllLines(options.bench(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      // Main prints the message and exits 1, as the Go and Node.js commands do for a file they cannot read.
      throw new IOException("cannot read " + options.bench() + ": " + why(e), e);
    }
    if (texts.isEmpty()) {
      throw new IOException(options.bench() + " holds no lines; put one text per line");
    }
    int concurrency = options.concurrency();
    int requests = options.requests();

    // Warm-up: connect, let the JIT compile the call path (a cold JVM spends several times the
    // CPU per call), wake the server's threads.
    run(client, texts, concurrency, WARMUP_CALLS_PER_CALLER * concurrency);

    var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    long cpuBefore = os.getProcessCpuTime();
    Phase phase = run(client, texts, concurrency, requests);
    long cpuNanos = os.getProcessCpuTime() - cpuBefore;

    long[] ok = Arrays.stream(phase.latencies).filter(n -> n >= 0).sorted().toArray();
    int errors = requests - ok.length;
    double seconds = phase.wallNanos / 1e9;
    out.println(
        String.format(
            Locale.ROOT,
            "{\"client\": \"java\", \"concurrency\": %d, \"requests\": %d, \"errors\": %d, \"seconds\": %.4f,"
                + " \"texts_per_s\": %.2f, \"p50_ms\": %s, \"p99_ms\": %s, \"cpu_ms_per_request\": %.4f}",
            concurrency,
            requests,
            errors,
            seconds,
            ok.length / seconds,
            percentileMs(ok, 0.50),
            percentileMs(ok, 0.99),
            cpuNanos / 1e6 / requests));
    if (phase.firstError.get() != null) {
      err.println("tfner-client: " + errors + " of " + requests + " calls failed; the first: " + phase.firstError.get());
    }
    return 0;
  }

  /** Why a file could not be read: java.nio's own messages are often only its path. */
  private static String why(IOException e) {
    if (e instanceof NoSuchFileException) {
      return "no such file";
    }
    if (e instanceof AccessDeniedException) {
      return "permission denied";
    }
    if (e instanceof CharacterCodingException) {
      return "it is not UTF-8 text";
    }
    if (e instanceof FileSystemException f && f.getReason() != null) {
      return f.getReason();
    }
    return e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
  }

  /** The calls of one phase: latency of call i in nanoseconds, -1 where it failed. */
  private record Phase(long[] latencies, long wallNanos, AtomicReference<String> firstError) {}

  private static Phase run(NerClient client, List<String> texts, int concurrency, int requests) {
    long[] latencies = new long[requests];
    AtomicInteger next = new AtomicInteger();
    AtomicReference<String> firstError = new AtomicReference<>();
    CountDownLatch ready = new CountDownLatch(concurrency);
    CountDownLatch go = new CountDownLatch(1);
    Thread[] callers = new Thread[concurrency];
    for (int t = 0; t < concurrency; t++) {
      callers[t] = new Thread(() -> {
        ready.countDown();
        awaitUninterruptibly(go);
        for (int i = next.getAndIncrement(); i < requests; i = next.getAndIncrement()) {
          List<String> one = List.of(texts.get(i % texts.size()));
          long start = System.nanoTime();
          try {
            client.predict(one);
            latencies[i] = System.nanoTime() - start;
          } catch (RuntimeException e) {
            latencies[i] = -1;
            firstError.compareAndSet(null, e.getMessage());
          }
        }
      }, "bench-caller-" + t);
      callers[t].start();
    }
    // Time from when every caller is waiting at the gate, so thread start-up is not counted.
    awaitUninterruptibly(ready);
    long start = System.nanoTime();
    go.countDown();
    for (Thread caller : callers) {
      joinUninterruptibly(caller);
    }
    return new Phase(latencies, System.nanoTime() - start, firstError);
  }

  /** Nearest-rank percentile of sorted nanoseconds, in milliseconds; null when nothing succeeded. */
  private static String percentileMs(long[] sorted, double p) {
    if (sorted.length == 0) {
      return "null";
    }
    int rank = (int) Math.ceil(p * sorted.length);
    return String.format(Locale.ROOT, "%.3f", sorted[Math.max(0, rank - 1)] / 1e6);
  }

  // Nothing interrupts the benchmark's threads on purpose: a stray interrupt must not cut a phase short.
  private static void awaitUninterruptibly(CountDownLatch latch) {
    while (true) {
      try {
        latch.await();
        return;
      } catch (InterruptedException e) {
        // Keep waiting.
      }
    }
  }

  private static void joinUninterruptibly(Thread thread) {
    while (true) {
      try {
        thread.join();
        return;
      } catch (InterruptedException e) {
        // Keep waiting.
      }
    }
  }
}
