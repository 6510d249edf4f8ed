package dev.tfner.client.cli;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.Charset;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The command-line arguments as the UTF-8 they must be, whatever the locale.
 *
 * <p>The JVM decodes {@code main}'s arguments with the locale's charset ({@code sun.jnu.encoding}):
 * under the C locale (env -i, many Docker images, cron, systemd units) every byte of 北京 becomes
 * U+FFFD, and in any locale bytes that are not valid in it (GBK typed into a UTF-8 terminal) become
 * U+FFFD too, silently. On Linux the bytes the process was given are in /proc/self/cmdline, and
 * they are decoded here instead, strictly, as the Go, Python and Node.js commands read them.
 */
final class Arguments {
  private static final Path CMDLINE = Path.of("/proc/self/cmdline");

  private Arguments() {}

  /**
   * The arguments, and the indices of those whose bytes are not UTF-8 (each decoded with U+FFFD in
   * place of the bad bytes).
   */
  record Decoded(String[] args, Set<Integer> notUtf8) {}

  /** {@code main}'s arguments, re-read from /proc/self/cmdline where there is one that holds them. */
  static Decoded of(String[] args) {
    byte[] cmdline;
    try {
      cmdline = Files.readAllBytes(CMDLINE);
    } catch (IOException | RuntimeException e) { // Not Linux, or no /proc mounted.
      return new Decoded(args, Set.of());
    }
    String jnu = System.getProperty("sun.jnu.encoding", "");
    // The charset the launcher decoded the arguments with (LauncherHelper.makePlatformString).
    Charset platform = Charset.isSupported(jnu) ? Charset.forName(jnu) : Charset.defaultCharset();
    return decode(cmdline, args, platform);
  }

  /**
   * {@code args}, decoded again from the last {@code args.length} entries of {@code cmdline} (the
   * process's NUL-terminated argv: java, its options, the class or jar, then the program's
   * arguments). Where those entries are not the arguments, e.g. under {@code mvn exec:java}, whose
   * process is Maven's, or when a launcher's @argfile held them, {@code args} as given.
   */
  static Decoded decode(byte[] cmdline, String[] args, Charset platform) {
    List<byte[]> entries = new ArrayList<>();
    ByteArrayOutputStream entry = new ByteArrayOutputStream();
    for (byte b : cmdline) {
      if (b == 0) {
        entries.add(entry.toByteArray());
        entry.reset();
      } else {
        entry.write(b);
      }
    }
    if (entries.size() < args.length) {
      return new Decoded(args, Set.of());
    }
    List<byte[]> raw = entries.subList(entries.size() - args.length, entries.size());
    for (int i = 0; i < args.length; i++) {
      // The entries are the arguments if they decode, as the launcher did, to the same strings.
      if (!new String(raw.get(i), platform).equals(args[i])) {
        return new Decoded(args, Set.of());
      }
    }
    var decoder =
        StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT);
    String[] decoded = new String[args.length];
    Set<Integer> notUtf8 = new HashSet<>();
    for (int i = 0; i < args.length; i++) {
      try {
        decoded[i] = decoder.decode(ByteBuffer.wrap(raw.get(i))).toString();
      } catch (CharacterCodingException e) {
        decoded[i] = new String(raw.get(i), StandardCharsets.UTF_8);
        notUtf8.add(i);
      }
    }
    return new Decoded(decoded, Set.copyOf(notUtf8));
  }
}
