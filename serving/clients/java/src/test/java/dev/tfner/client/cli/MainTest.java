package dev.tfner.client.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.tfner.client.TestEnv;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledOnOs;
import org.junit.jupiter.api.condition.OS;
import org.junit.jupiter.api.io.TempDir;

/** The command-line example against the test server: JSON lines, errors, and the bench mode. */
class MainTest {

  /** What one run printed and returned. */
  private record Run(int status, String out, String err) {
    List<JsonObject> lines() {
      return out.lines().map(line -> JsonParser.parseString(line).getAsJsonObject()).toList();
    }
  }

  private static Run run(String stdin, String... args) {
    return run(stdin.getBytes(StandardCharsets.UTF_8), args);
  }

  private static Run run(byte[] stdin, String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int status =
        Main.run(
            args,
            new ByteArrayInputStream(stdin),
            new PrintStream(out, true, StandardCharsets.UTF_8),
            new PrintStream(err, true, StandardCharsets.UTF_8));
    return new Run(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  /**
   * The command as its own process ({@code java -cp ... Main}), its text arguments given as these
   * bytes, in an empty environment: the C locale of Docker images, cron and systemd units, where the
   * JVM decodes arguments as ASCII. The bytes go through {@code sh}'s printf: ProcessBuilder would
   * encode a String argument with this JVM's own charset, and could pass no bytes that are not UTF-8.
   */
  private static Run runProcess(List<String> flags, byte[]... texts) throws IOException, InterruptedException {
    StringBuilder script = new StringBuilder("exec \"$@\"");
    for (byte[] text : texts) {
      script.append(" \"$(printf '");
      for (byte b : text) {
        script.append(String.format("\\%03o", b & 0xff));
      }
      script.append("')\"");
    }
    List<String> command = new ArrayList<>(List.of("/bin/sh", "-c", script.toString(), "sh",
        Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", System.getProperty("java.class.path"), Main.class.getName()));
    command.addAll(flags);
    ProcessBuilder builder = new ProcessBuilder(command);
    builder.environment().clear();
    Process process = builder.start();
    process.getOutputStream().close(); // No standard input: the texts are arguments.
    // Small outputs: read one stream after the other.
    byte[] out = process.getInputStream().readAllBytes();
    byte[] err = process.getErrorStream().readAllBytes();
    if (!process.waitFor(120, TimeUnit.SECONDS)) {
      process.destroyForcibly();
      throw new AssertionError("the command did not exit in 120 s");
    }
    return new Run(process.exitValue(), new String(out, StandardCharsets.UTF_8), new String(err, StandardCharsets.UTF_8));
  }

  @Test
  @EnabledOnOs(OS.LINUX) // Where the raw arguments can be read (/proc/self/cmdline).
  void textArgumentsAreUtf8WhateverTheLocale() throws IOException, InterruptedException {
    Run run = runProcess(List.of("--server", TestEnv.server()), "北京欢迎你".getBytes(StandardCharsets.UTF_8), new byte[0]);
    assertEquals(0, run.status(), run.err());
    assertEquals(List.of("北京欢迎你", ""), run.lines().stream().map(l -> l.get("text").getAsString()).toList());
  }

  @Test
  @EnabledOnOs(OS.LINUX)
  void aTextArgumentThatIsNotUtf8ExitsTwoNamingIt() throws IOException, InterruptedException {
    // 北京 in GBK, which the JVM would otherwise turn into U+FFFDs and send. No server: the check
    // comes before any call.
    byte[] gbk = {(byte) 0xb1, (byte) 0xb1, (byte) 0xbe, (byte) 0xa9};
    Run run = runProcess(List.of("--server", "127.0.0.1:1"), "北京".getBytes(StandardCharsets.UTF_8), gbk);
    assertEquals(2, run.status(), run.err());
    assertEquals("", run.out());
    assertEquals(
        "tfner-client: text argument 2 is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8",
        run.err().strip());
  }

  @Test
  void printsOneJsonLinePerArgumentWithBothOffsets() {
    Run run = run("", "--server", TestEnv.server(), "--label", "stable", "😀张三在北京😀工作", "");
    assertEquals(0, run.status(), run.err());
    List<JsonObject> lines = run.lines();
    assertEquals(2, lines.size());
    assertEquals("😀张三在北京😀工作", lines.get(0).get("text").getAsString());
    assertEquals("", lines.get(1).get("text").getAsString());
    for (var element : lines.get(0).getAsJsonArray("entities")) {
      JsonObject e = element.getAsJsonObject();
      String text = lines.get(0).get("text").getAsString();
      assertEquals(e.get("text").getAsString(), text.substring(e.get("utf16_start").getAsInt(), e.get("utf16_end").getAsInt()));
      assertTrue(e.has("label") && e.has("start") && e.has("end") && e.has("score"), e.toString());
    }
  }

  @Test
  void readsTextsFromStandardInput() {
    Run run = run("张三在北京工作。\r\n李四去了上海。\n", "--server=" + TestEnv.server(), "--timeout", "5");
    assertEquals(0, run.status(), run.err());
    assertEquals(List.of("张三在北京工作。", "李四去了上海。"), run.lines().stream().map(l -> l.get("text").getAsString()).toList());
  }

  @Test
  void standardInputLinesSplitAtNewlinesOnlyAsInTheOtherClients() throws IOException, Main.InputException {
    byte[] stdin = "北京\r欢迎你\n上海\r\r\n\n".getBytes(StandardCharsets.UTF_8);
    assertEquals(List.of("北京\r欢迎你", "上海", ""), Main.readLines(new ByteArrayInputStream(stdin)));
  }

  @Test
  void aByteOrderMarkAtTheStartOfStandardInputIsDropped() throws IOException, Main.InputException {
    byte[] stdin = "\ufeff北京\n\ufeff上海\n".getBytes(StandardCharsets.UTF_8);
    assertEquals(List.of("北京", "\ufeff上海"), Main.readLines(new ByteArrayInputStream(stdin)));
  }

  @Test
  void invalidUtf8OnStandardInputNamesItsLine() {
    byte[] stdin = {'a', '\n', (byte) 0xe5, (byte) 0x8c, '\n', 'b', '\n'};
    Main.InputException e = org.junit.jupiter.api.Assertions.assertThrows(
        Main.InputException.class, () -> Main.readLines(new ByteArrayInputStream(stdin)));
    assertEquals(
        "standard input line 2 is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8", e.getMessage());
  }

  @Test
  void invalidUtf8OnStandardInputExitsTwoNamingTheLine() {
    // Bad input is the caller's mistake, like a bad flag: exit 2, as the Python command does, not
    // 1, which says the server refused. No server: the channel connects on the first call, which
    // never comes.
    byte[] stdin = {'a', '\n', (byte) 0xb1, (byte) 0xb1, (byte) 0xbe, (byte) 0xa9, '\n'}; // 北京 in GBK
    Run run = run(stdin, "--server", "127.0.0.1:1");
    assertEquals(2, run.status(), run.err());
    assertEquals("", run.out());
    assertEquals(
        "tfner-client: standard input line 2 is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8",
        run.err().strip());
  }

  @Test
  void unreadableCaFileExitsTwoWithAMessage(@TempDir Path dir) throws IOException {
    Path garbage = Files.writeString(dir.resolve("ca.pem"), "not a certificate\n");
    for (String ca : List.of(dir.resolve("missing.pem").toString(), garbage.toString())) {
      Run run = run("", "--server", TestEnv.server(), "--tls_ca_file", ca, "北京");
      assertEquals(2, run.status(), run.err());
      assertTrue(run.err().startsWith("tfner-client: "), run.err());
    }
  }

  @Test
  void refusedCallExitsOneWithCodeAndMessage() {
    Run run = run("", "--server", TestEnv.server(), "--model", "no_such_model", "北京");
    assertEquals(1, run.status());
    assertEquals("", run.out());
    assertTrue(run.err().startsWith("NOT_FOUND: "), run.err());
  }

  @Test
  void badCommandLineExitsTwo() {
    Run run = run("", "--server", TestEnv.server(), "--version", "1", "--label", "stable", "北京");
    assertEquals(2, run.status());
    assertTrue(run.err().contains("give --version or --label, not both"), run.err());
  }

  @Test
  void unreadableBenchFileExitsOneSayingWhy(@TempDir Path dir) {
    // Exit 1 as in the Go and Node.js commands; the message says why, not only the path.
    Path missing = dir.resolve("missing.txt");
    Run run = run("", "--server", "127.0.0.1:1", "--bench", missing.toString());
    assertEquals(1, run.status(), run.err());
    assertEquals("", run.out());
    assertEquals("tfner-client: cannot read " + missing + ": no such file", run.err().strip());
  }

  @Test
  void benchPrintsOneLineOfFigures(@TempDir Path dir) throws IOException {
    Path texts = Files.writeString(dir.resolve("texts.txt"), "张三在北京工作。\n李四去了上海。\n😀\n", StandardCharsets.UTF_8);
    Run run = run("", "--server", TestEnv.server(), "--bench", texts.toString(), "--concurrency", "4", "--requests", "40");
    assertEquals(0, run.status(), run.err());
    List<JsonObject> lines = run.lines();
    assertEquals(1, lines.size(), run.out());
    JsonObject figures = lines.get(0);
    assertEquals(
        List.of("client", "concurrency", "requests", "errors", "seconds", "texts_per_s", "p50_ms", "p99_ms", "cpu_ms_per_request"),
        List.copyOf(figures.keySet()));
    assertEquals("java", figures.get("client").getAsString());
    assertEquals(4, figures.get("concurrency").getAsInt());
    assertEquals(40, figures.get("requests").getAsInt());
    assertEquals(0, figures.get("errors").getAsInt());
    assertTrue(figures.get("p99_ms").getAsDouble() >= figures.get("p50_ms").getAsDouble(), figures.toString());
    assertTrue(figures.get("cpu_ms_per_request").getAsDouble() > 0, figures.toString());
  }
}
