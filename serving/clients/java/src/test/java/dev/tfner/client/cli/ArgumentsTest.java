package dev.tfner.client.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Re-reading the arguments from /proc/self/cmdline's bytes, and leaving them be where those are not them. */
class ArgumentsTest {
  private static final byte[] GBK = {(byte) 0xb1, (byte) 0xb1, (byte) 0xbe, (byte) 0xa9}; // 北京

  /** A /proc/self/cmdline: each entry followed by a NUL. */
  private static byte[] cmdline(byte[]... entries) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (byte[] entry : entries) {
      out.writeBytes(entry);
      out.write(0);
    }
    return out.toByteArray();
  }

  private static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void theLastEntriesAreDecodedAsUtf8() {
    // What the JVM made of them under the C locale: one U+FFFD per byte of each non-ASCII argument.
    String[] args = {"--server", "h:1", "\ufffd".repeat(6), "", "\ufffd".repeat(4)};
    byte[] cmdline = cmdline(utf8("java"), utf8("-jar"), utf8("x.jar"), utf8("--server"), utf8("h:1"),
        utf8("北京"), new byte[0], GBK);
    Arguments.Decoded decoded = Arguments.decode(cmdline, args, StandardCharsets.US_ASCII);
    assertArrayEquals(new String[] {"--server", "h:1", "北京", "", "\ufffd".repeat(4)}, decoded.args());
    assertEquals(Set.of(4), decoded.notUtf8());
  }

  @Test
  void entriesThatAreNotTheArgumentsLeaveThemAsGiven() {
    // mvn exec:java: the process is Maven's, and its command line ends with Maven's own arguments.
    String[] args = {"--server", "h:1", "北京"};
    byte[] maven = cmdline(utf8("java"), utf8("org.codehaus.plexus.classworlds.launcher.Launcher"), utf8("-q"),
        utf8("compile"), utf8("exec:java"), utf8("-Dexec.args=--server h:1 北京"));
    assertSame(args, Arguments.decode(maven, args, StandardCharsets.UTF_8).args());
    // Fewer entries than arguments (a launcher's @argfile held them).
    assertSame(args, Arguments.decode(cmdline(utf8("java"), utf8("@argfile")), args, StandardCharsets.UTF_8).args());
  }
}
