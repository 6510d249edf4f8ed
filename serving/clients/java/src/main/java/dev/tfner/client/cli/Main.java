package dev.tfner.client.cli;

import dev.tfner.client.NerClient;
import dev.tfner.client.NerException;
import dev.tfner.client.Prediction;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The command-line example: one JSON line of entities per text, or a load benchmark.
 *
 * <pre>
 * mvn -q compile exec:java -Dexec.args="--server localhost:8500 北京欢迎你 他从上海来"
 * mvn -q compile exec:java -Dexec.args="--server localhost:8500 --label canary" &lt; texts.txt
 * </pre>
 *
 * Exit status: 0 done, 1 the server refused a call (or a file could not be read), 2 a bad command
 * line or a text (argument or line of standard input) that is not UTF-8. Arguments are read as
 * UTF-8 whatever the locale ({@link Arguments}).
 */
public final class Main {
  private Main() {}

  /** Texts that are not UTF-8 (arguments or standard input): the caller's mistake, exit 2 as for a bad command line. */
  static final class InputException extends Exception {
    private static final long serialVersionUID = 1L;

    InputException(String message, Throwable cause) {
      super(message, cause);
    }
  }

  public static void main(String[] args) {
    // Java's default stdout encoding follows the locale; the JSON lines are always UTF-8.
    PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
    Arguments.Decoded arguments = Arguments.of(args);
    int status = run(arguments.args(), arguments.notUtf8(), System.in, out, System.err);
    out.flush();
    // Exit explicitly: under `mvn exec:java` gRPC's pooled threads would keep the JVM waiting.
    System.exit(status);
  }

  static int run(String[] args, InputStream in, PrintStream out, PrintStream err) {
    return run(args, Set.of(), in, out, err);
  }

  /** As above, for arguments of which those at the indices {@code notUtf8} were not UTF-8. */
  static int run(String[] args, Set<Integer> notUtf8, InputStream in, PrintStream out, PrintStream err) {
    Options options;
    try {
      options = Options.parse(args, notUtf8);
    } catch (Options.UsageException e) {
      if (e.getMessage() == null) { // --help
        out.print(Options.USAGE);
        return 0;
      }
      err.print(Options.USAGE);
      err.println("tfner-client: " + e.getMessage());
      return 2;
    } catch (InputException e) {
      err.println("tfner-client: " + e.getMessage());
      return 2;
    }
    NerClient built;
    try {
      built = options.client();
    } catch (RuntimeException e) {
      // A --tls_ca_file that cannot be read, or holds no certificate: a bad command line.
      err.println("tfner-client: " + e.getMessage());
      return 2;
    }
    try (NerClient client = built) {
      if (options.bench() != null) {
        return Bench.run(client, options, out, err);
      }
      List<String> texts = options.texts().isEmpty() ? readLines(in) : options.texts();
      for (Prediction prediction : client.predict(texts)) {
        out.println(Json.line(prediction));
      }
      return 0;
    } catch (NerException e) {
      err.println(e.code() + ": " + e.serverMessage());
      return 1;
    } catch (InputException e) {
      err.println("tfner-client: " + e.getMessage());
      return 2;
    } catch (IOException | IllegalArgumentException e) {
      err.println("tfner-client: " + e.getMessage());
      return 1;
    }
  }

  /**
   * One text per line of UTF-8, split at "\n" with the "\r"s before it dropped, as the Python, Go
   * and Node.js clients read standard input (a "\r" inside a line stays in its text); a byte-order
   * mark at the start is dropped (Windows editors write one); invalid UTF-8 is an {@link
   * InputException} naming the line.
   */
  static List<String> readLines(InputStream in) throws IOException, InputException {
    var decoder =
        StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT);
    byte[] bytes = in.readAllBytes();
    List<String> lines = new ArrayList<>();
    int first = bytes.length >= 3 && (bytes[0] & 0xff) == 0xef && (bytes[1] & 0xff) == 0xbb
        && (bytes[2] & 0xff) == 0xbf ? 3 : 0;
    // No UTF-8 sequence holds the bytes of "\n" or "\r", so lines can be cut before decoding.
    for (int start = first; start < bytes.length; ) {
      int end = start;
      while (end < bytes.length && bytes[end] != '\n') {
        end++;
      }
      int stop = end;
      while (stop > start && bytes[stop - 1] == '\r') {
        stop--;
      }
      try {
        lines.add(decoder.decode(ByteBuffer.wrap(bytes, start, stop - start)).toString());
      } catch (CharacterCodingException e) {
        throw new InputException(
            "standard input line " + (lines.size() + 1)
                + " is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8",
            e);
      }
      start = end + 1;
    }
    return lines;
  }
}
