package dev.tfner.client.cli;

import dev.tfner.client.NerClient;
import dev.tfner.client.NerException;
import dev.tfner.client.Prediction;
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The command-line example: one JSON line of entities per text, or a load benchmark.
 *
 * <pre>
 * mvn -q compile exec:java -Dexec.args="--server localhost:8500 北京欢迎你 他从上海来"
 * mvn -q compile exec:java -Dexec.args="--server localhost:8500 --label canary" &lt; texts.txt
 * </pre>
 *
 * Exit status: 0 done, 1 the server refused a call (or a text could not be read), 2 a bad command
 * line.
 */
public final class Main {
  private Main() {}

  public static void main(String[] args) {
    // Java's default stdout encoding follows the locale; the JSON lines are always UTF-8.
    PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
    int status = run(args, System.in, out, System.err);
    out.flush();
    // Exit explicitly: under `mvn exec:java` gRPC's pooled threads would keep the JVM waiting.
    System.exit(status);
  }

  static int run(String[] args, InputStream in, PrintStream out, PrintStream err) {
    Options options;
    try {
      options = Options.parse(args);
    } catch (Options.UsageException e) {
      if (e.getMessage() == null) { // --help
        out.print(Options.USAGE);
        return 0;
      }
      err.print(Options.USAGE);
      err.println("tfner-client: " + e.getMessage());
      return 2;
    }
    try (NerClient client = options.client()) {
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
    } catch (IOException | IllegalArgumentException e) {
      err.println("tfner-client: " + e.getMessage());
      return 1;
    }
  }

  /** One text per line of UTF-8 (line ends: \n, \r\n or \r); invalid UTF-8 is an error naming the line. */
  static List<String> readLines(InputStream in) throws IOException {
    var decoder =
        StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT);
    List<String> lines = new ArrayList<>();
    try (BufferedReader reader = new BufferedReader(new InputStreamReader(in, decoder))) {
      for (String line = reader.readLine(); line != null; line = reader.readLine()) {
        lines.add(line);
      }
    } catch (CharacterCodingException e) {
      throw new IOException("standard input line " + (lines.size() + 1) + " is not valid UTF-8", e);
    }
    return lines;
  }
}
