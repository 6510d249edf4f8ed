package dev.tfner.client;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A {@code tfner.serve} the test starts itself (TFNER_SERVE_COMMAND plus {@code --port P}), ready
 * once it logs its ready line. Closing it sends SIGTERM and waits for the exit (SIGKILL after 30 s).
 */
final class ServeProcess implements AutoCloseable {
  private static final Pattern READY = Pattern.compile("tfner\\.serve ready: grpc_port=(\\d+)");
  private static final Duration START_TIMEOUT = Duration.ofSeconds(150);

  private final Process process;
  private final Deque<String> lastLines = new ArrayDeque<>();
  private final CompletableFuture<Integer> ready = new CompletableFuture<>();

  private ServeProcess(List<String> argv) throws IOException {
    process = new ProcessBuilder(argv).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    // Drain stderr for the life of the process: a full pipe would stall the server.
    Thread reader = new Thread(this::readLog, "serve-log-" + process.pid());
    reader.setDaemon(true);
    reader.start();
  }

  /** Starts a server on {@code port} and waits until it accepts calls. */
  static ServeProcess start(List<String> command, int port) throws IOException, InterruptedException {
    List<String> argv = new ArrayList<>(command);
    argv.addAll(List.of("--port", Integer.toString(port)));
    ServeProcess server = new ServeProcess(argv);
    try {
      int readyPort = server.ready.get(START_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
      if (readyPort != port) {
        throw new AssertionError("tfner.serve reports port " + readyPort + ", asked for " + port);
      }
      return server;
    } catch (ExecutionException | TimeoutException | AssertionError e) {
      server.close();
      throw new AssertionError("tfner.serve did not start on port " + port + " within " + START_TIMEOUT + " ("
          + e + "); command " + argv + "; its last log lines:\n" + server.log(), e);
    }
  }

  /** SIGTERM, then wait for the exit. */
  void stop() throws InterruptedException {
    process.destroy(); // SIGTERM on Linux: tfner.serve finishes in-flight calls and exits.
    if (!process.waitFor(30, TimeUnit.SECONDS)) {
      process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
    }
  }

  @Override
  public void close() {
    if (process.isAlive()) {
      try {
        stop();
      } catch (InterruptedException e) {
        process.destroyForcibly();
        Thread.currentThread().interrupt();
      }
    }
  }

  synchronized String log() {
    return String.join("\n", lastLines);
  }

  private void readLog() {
    try (BufferedReader in = new BufferedReader(new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8))) {
      for (String line = in.readLine(); line != null; line = in.readLine()) {
        synchronized (this) {
          lastLines.addLast(line);
          if (lastLines.size() > 40) {
            lastLines.removeFirst();
          }
        }
        Matcher m = READY.matcher(line);
        if (m.find()) {
          ready.complete(Integer.parseInt(m.group(1)));
        }
      }
    } catch (IOException e) {
      // The process is gone; the exit below says so.
    }
    ready.completeExceptionally(new IllegalStateException("tfner.serve exited before it was ready"));
  }
}
