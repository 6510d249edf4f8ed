package dev.tfner.client.cli;

import dev.tfner.client.LoadBalancing;
import dev.tfner.client.NerClient;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/** The command line of {@link Main}, parsed; flags as {@code --name value} or {@code --name=value}. */
record Options(
    String server,
    String model,
    Long version,
    String label,
    Duration timeout,
    int retries,
    int chunkSize,
    boolean tls,
    Path tlsCaFile,
    LoadBalancing loadBalancing,
    Path bench,
    int concurrency,
    int requests,
    List<String> texts) {

  static final String USAGE =
      """
      usage: tfner-client --server HOST:PORT [--model NAME] [--version N | --label NAME]
                          [--timeout SECONDS] [--retries N] [--chunk_size N]
                          [--tls] [--tls_ca_file PEM] [--load_balancing pick_first|round_robin]
                          [TEXT ...]
             tfner-client --server HOST:PORT ... --bench FILE [--concurrency C] [--requests N]

      Prints the entities of each text as one JSON line: the TEXT arguments, or else one text per
      line of standard input. Offsets: "start"/"end" in code points, "utf16_start"/"utf16_end" in
      Java string (UTF-16) indices. Exits 1 with "CODE: message" on standard error when the server
      refuses a call, 2 on a bad command line or a text (argument or line of standard input) that is
      not UTF-8.

      --bench FILE runs N Predict calls of one text each (cycling through the lines of FILE) from C
      threads sharing one client, after a short warm-up, and prints one JSON line of figures.
      Defaults: --model ner, --timeout 10, --retries 3, --chunk_size 16, --concurrency 1,
      --requests 1000.
      """;

  private static final Set<String> FLAGS =
      Set.of(
          "--server", "--model", "--version", "--label", "--timeout", "--retries", "--chunk_size", "--tls",
          "--tls_ca_file", "--load_balancing", "--bench", "--concurrency", "--requests", "--help");

  /** A command line that cannot be run; the message says what to change. */
  static final class UsageException extends Exception {
    private static final long serialVersionUID = 1L;

    UsageException(String message) {
      super(message);
    }
  }

  /**
   * The command line {@code args}, of which those at the indices {@code notUtf8} were not UTF-8
   * ({@link Arguments}): a TEXT among them is an {@link Main.InputException} naming it, after any
   * usage error.
   */
  static Options parse(String[] args, Set<Integer> notUtf8) throws UsageException, Main.InputException {
    String server = null;
    String model = "ner";
    Long version = null;
    String label = null;
    Duration timeout = Duration.ofSeconds(10);
    int retries = 3;
    int chunkSize = 16;
    boolean tls = false;
    Path tlsCaFile = null;
    LoadBalancing loadBalancing = LoadBalancing.PICK_FIRST;
    Path bench = null;
    int concurrency = 1;
    int requests = 1000;
    List<String> texts = new ArrayList<>();
    int firstNotUtf8 = 0; // Which TEXT, counting from 1; 0: none.

    boolean onlyTexts = false; // After "--".
    for (int i = 0; i < args.length; i++) {
      String arg = args[i];
      if (!onlyTexts && arg.equals("--")) {
        onlyTexts = true;
        continue;
      }
      if (onlyTexts || !arg.startsWith("--") || arg.equals("-")) {
        texts.add(arg);
        if (firstNotUtf8 == 0 && notUtf8.contains(i)) {
          firstNotUtf8 = texts.size();
        }
        continue;
      }
      String name = arg;
      String value = null;
      int eq = arg.indexOf('=');
      if (eq > 0) {
        name = arg.substring(0, eq);
        value = arg.substring(eq + 1);
      }
      if (!FLAGS.contains(name)) {
        throw new UsageException("unknown flag " + name);
      }
      if (name.equals("--tls") || name.equals("--help")) {
        if (value != null) {
          throw new UsageException(name + " takes no value");
        }
        if (name.equals("--help")) {
          throw new UsageException(null);
        }
        tls = true;
        continue;
      }
      if (value == null) {
        if (i + 1 >= args.length) {
          throw new UsageException(name + " needs a value");
        }
        value = args[++i];
      }
      switch (name) {
        case "--server" -> server = value;
        case "--model" -> model = value;
        case "--version" -> version = (long) positive(name, value, 0);
        case "--label" -> label = value;
        case "--timeout" -> timeout = seconds(name, value);
        case "--retries" -> retries = positive(name, value, 0);
        case "--chunk_size" -> chunkSize = positive(name, value, 1);
        case "--tls_ca_file" -> {
          tls = true;
          tlsCaFile = Path.of(value);
        }
        case "--load_balancing" -> loadBalancing = loadBalancing(value);
        case "--bench" -> bench = Path.of(value);
        case "--concurrency" -> concurrency = positive(name, value, 1);
        case "--requests" -> requests = positive(name, value, 1);
        default -> throw new UsageException("unknown flag " + name);
      }
    }
    if (server == null) {
      throw new UsageException("--server is required, e.g. --server localhost:8500");
    }
    if (version != null && label != null) {
      throw new UsageException("give --version or --label, not both");
    }
    if (bench != null && !texts.isEmpty()) {
      throw new UsageException("--bench reads its texts from FILE; drop the TEXT arguments");
    }
    if (firstNotUtf8 > 0) {
      throw new Main.InputException(
          "text argument " + firstNotUtf8 + " is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8", null);
    }
    return new Options(
        server, model, version, label, timeout, retries, chunkSize, tls, tlsCaFile, loadBalancing,
        bench, concurrency, requests, List.copyOf(texts));
  }

  /** A client with these settings. */
  NerClient client() {
    NerClient.Builder builder =
        NerClient.builder(server)
            .model(model)
            .timeout(timeout)
            .retries(retries)
            .chunkSize(chunkSize)
            .loadBalancing(loadBalancing);
    if (version != null) {
      builder.version(version);
    }
    if (label != null) {
      builder.label(label);
    }
    if (tlsCaFile != null) {
      builder.tls(tlsCaFile);
    } else if (tls) {
      builder.tls();
    }
    return builder.build();
  }

  private static int positive(String name, String value, int min) throws UsageException {
    try {
      int n = Integer.parseInt(value);
      if (n >= min) {
        return n;
      }
    } catch (NumberFormatException e) {
      // Reported below.
    }
    throw new UsageException(name + " takes an integer >= " + min + ", got '" + value + "'");
  }

  private static Duration seconds(String name, String value) throws UsageException {
    try {
      double seconds = Double.parseDouble(value);
      if (seconds > 0 && seconds < 1e9) {
        return Duration.ofNanos(Math.max(1, Math.round(seconds * 1e9)));
      }
    } catch (NumberFormatException e) {
      // Reported below.
    }
    throw new UsageException(name + " takes seconds > 0, e.g. 2.5; got '" + value + "'");
  }

  private static LoadBalancing loadBalancing(String value) throws UsageException {
    for (LoadBalancing lb : LoadBalancing.values()) {
      if (lb.policy().equals(value.toLowerCase(Locale.ROOT))) {
        return lb;
      }
    }
    throw new UsageException("--load_balancing takes pick_first or round_robin, got '" + value + "'");
  }
}
