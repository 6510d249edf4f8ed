package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * The server under test, configured only through environment variables (a missing one fails the
 * tests that need it, with what to set):
 *
 * <ul>
 *   <li>{@code TFNER_SERVER}: {@code 127.0.0.1:PORT} of a running {@code python -m tfner.serve}:
 *       model {@code ner}, versions 1 and 2, labels stable -> 1 and canary -> 2.
 *   <li>{@code TFNER_PARITY}: JSON lines of the expected entities of each text.
 *   <li>{@code TFNER_SERVE_COMMAND}: a JSON array, the argv that starts another such server (the
 *       restart test appends {@code --port P}).
 *   <li>{@code TFNER_MAX_TEXTS_PER_REQUEST}, {@code TFNER_MAX_CHARS_PER_REQUEST}: the server's
 *       limits; default 128 and 20000.
 * </ul>
 */
public final class TestEnv {
  private static List<ParityCase> parity;

  private TestEnv() {}

  public static String server() {
    return required("TFNER_SERVER", "127.0.0.1:PORT of a running python -m tfner.serve (serving/clients/java/README.md)");
  }

  /** A client of the test server with the defaults, but retries that fail fast on a dead server. */
  static NerClient.Builder client() {
    return NerClient.builder(server()).retries(2).backoff(Duration.ofMillis(50), Duration.ofMillis(200));
  }

  static synchronized List<ParityCase> parity() {
    if (parity == null) {
      Path path = Path.of(required("TFNER_PARITY", "a JSON-lines file of {\"text\", \"entities\"} expected answers"));
      try {
        List<ParityCase> cases = new ArrayList<>();
        for (String line : Files.readAllLines(path, StandardCharsets.UTF_8)) {
          if (!line.isBlank()) {
            cases.add(ParityCase.parse(line));
          }
        }
        if (cases.isEmpty()) {
          fail("TFNER_PARITY=" + path + " holds no cases");
        }
        parity = List.copyOf(cases);
      } catch (IOException e) {
        throw new AssertionError("cannot read TFNER_PARITY=" + path + ": " + e, e);
      }
    }
    return parity;
  }

  static List<String> serveCommand() {
    String json = required("TFNER_SERVE_COMMAND", "a JSON array: the argv that starts python -m tfner.serve");
    try {
      JsonArray array = JsonParser.parseString(json).getAsJsonArray();
      List<String> argv = new ArrayList<>();
      for (JsonElement element : array) {
        argv.add(element.getAsString());
      }
      if (argv.isEmpty()) {
        fail("TFNER_SERVE_COMMAND is an empty array");
      }
      return argv;
    } catch (RuntimeException e) {
      throw new AssertionError("TFNER_SERVE_COMMAND is not a JSON array of strings: " + json, e);
    }
  }

  static int maxTextsPerRequest() {
    return intOr("TFNER_MAX_TEXTS_PER_REQUEST", 128);
  }

  static int maxCharsPerRequest() {
    return intOr("TFNER_MAX_CHARS_PER_REQUEST", 20000);
  }

  /** A loopback port nothing listens on (just closed). */
  public static int freePort() {
    try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return socket.getLocalPort();
    } catch (IOException e) {
      throw new AssertionError("no free loopback port: " + e, e);
    }
  }

  private static String required(String name, String what) {
    String value = System.getenv(name);
    if (value == null || value.isBlank()) {
      fail(name + " is not set; export it as " + what);
    }
    return value;
  }

  private static int intOr(String name, int fallback) {
    String value = System.getenv(name);
    return value == null || value.isBlank() ? fallback : Integer.parseInt(value.trim());
  }
}
