// The command-line example, run as a user would: JSON lines, stdin, exit codes, and the bench mode.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

import { PARITY, SERVER } from "./env.js";
import { assertParity } from "./parity.js";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], stdin: string | Buffer = ""): Promise<Run> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  child.stdin.end(stdin);
  return finished(child);
}

/** The child's exit code and output, once it has closed. */
function finished(child: ChildProcess): Promise<Run> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The command with its text arguments given as these bytes, through sh's printf: spawn would encode a string
 * argument as UTF-8, and could not pass bytes that are not. */
function runWithByteArguments(flags: string[], ...texts: Buffer[]): Promise<Run> {
  const octal = (bytes: Buffer) => [...bytes].map((b) => "\\" + b.toString(8).padStart(3, "0")).join("");
  const script = `exec "$@"${texts.map((text) => ` "$(printf '${octal(text)}')"`).join("")}`;
  return finished(spawn("/bin/sh", ["-c", script, "sh", process.execPath, CLI, ...flags], { stdio: ["ignore", "pipe", "pipe"] }));
}

interface Line {
  text: string;
  entities: { label: string; start: number; end: number; text: string; score: number; utf16_start: number; utf16_end: number }[];
}

const ENTITY_KEYS = ["label", "start", "end", "text", "score", "utf16_start", "utf16_end"];

/** One CLI line, checked against parity record `index`. */
function checkLine(line: Line, index: number): void {
  const record = PARITY[index]!;
  assert.equal(line.text, record.text);
  for (const e of line.entities) assert.deepEqual(Object.keys(e), ENTITY_KEYS);
  const entities = line.entities.map((e) => ({ ...e, utf16Start: e.utf16_start, utf16End: e.utf16_end }));
  assertParity(entities, record, `CLI line for parity line ${index + 1}`);
}

// Texts that pass through argv and stdin unchanged: one line, not empty.
const picks = PARITY.map((r, i) => [r, i] as const)
  .filter(([r]) => r.text !== "" && !/[\r\n]/.test(r.text) && !r.text.startsWith("-") && r.text.length < 1_000)
  .sort(([a], [b]) => Number(/[\uD800-\uDFFF]/.test(b.text)) - Number(/[\uD800-\uDFFF]/.test(a.text)))
  .slice(0, 5)
  .map(([, i]) => i);

test("texts as arguments: one JSON line each, in order, with both offset units", async () => {
  const result = await run(["--server", SERVER, ...picks.map((i) => PARITY[i]!.text)]);
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trimEnd().split("\n");
  assert.equal(lines.length, picks.length);
  lines.forEach((line, k) => checkLine(JSON.parse(line) as Line, picks[k]!));
});

test("texts from stdin, one per line (CRLF too; an empty line is an empty text)", async () => {
  const input = picks.map((i) => PARITY[i]!.text).join("\r\n") + "\n\n";
  const result = await run(["--server", SERVER, "--label", "stable"], input);
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Line);
  assert.equal(lines.length, picks.length + 1);
  lines.slice(0, -1).forEach((line, k) => checkLine(line, picks[k]!));
  assert.deepEqual(lines.at(-1), { text: "", entities: [] });
});

test("stdin drops every \\r before a line's end, and a byte-order mark at its start only", async () => {
  const result = await run(["--server", SERVER, "--label", "stable"], "\ufeff北京\r\r\n\ufeff上海\n");
  assert.equal(result.code, 0, result.stderr);
  const texts = result.stdout.trimEnd().split("\n").map((l) => (JSON.parse(l) as Line).text);
  assert.deepEqual(texts, ["北京", "\ufeff上海"]);
});

// Bad input is the caller's mistake, like a bad flag: exit 2, as in the Python command (1: the server refused).
test("stdin that is not UTF-8 exits 2 naming the line, before any call", async () => {
  const input = Buffer.concat([Buffer.from("北京\n"), Buffer.from([0xb1, 0xb1, 0xbe, 0xa9]), Buffer.from("\n")]); // GBK
  const result = await run(["--server", SERVER], input);
  assert.equal(result.code, 2, result.stderr);
  assert.equal(
    result.stderr,
    "tfner-client: standard input line 2 is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8\n",
  );
  assert.equal(result.stdout, "");
});

test("stdin's last line holding only \\r is an empty text; stdin holding only a byte-order mark holds none", async () => {
  // As the Python, Go and Java clients read them: "\r"s are dropped before a line's end, not before the check
  // for the empty string that follows a final "\n".
  let result = await run(["--server", SERVER], "北京\n\r");
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.stdout.trimEnd().split("\n").map((l) => (JSON.parse(l) as Line).text), ["北京", ""]);
  result = await run(["--server", SERVER], Buffer.from([0xef, 0xbb, 0xbf]));
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "");
});

test(
  "a text argument that is not UTF-8 exits 2 naming it, before any call",
  { skip: process.platform !== "linux" && "the raw arguments are read from /proc/self/cmdline" },
  async () => {
    const gbk = Buffer.from([0xb1, 0xb1, 0xbe, 0xa9]); // 北京 in GBK, which Node would turn into U+FFFDs and send
    const result = await runWithByteArguments(["--server", "127.0.0.1:1"], Buffer.from("北京"), gbk);
    assert.equal(result.code, 2, result.stderr);
    assert.equal(
      result.stderr,
      "tfner-client: text argument 2 is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8\n",
    );
    assert.equal(result.stdout, "");
    // Valid UTF-8, an empty argument among them, goes through unchanged.
    const valid = await runWithByteArguments(["--server", SERVER], Buffer.from("北京欢迎你"), Buffer.alloc(0));
    assert.equal(valid.code, 0, valid.stderr);
    assert.deepEqual(valid.stdout.trimEnd().split("\n").map((l) => (JSON.parse(l) as Line).text), ["北京欢迎你", ""]);
  },
);

test("output closed early (| head -1) exits quietly with 141, as the Go command killed by SIGPIPE", async () => {
  const result = await new Promise<Run>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "--server", SERVER, "北京欢迎你", "他从上海来"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.destroy(); // Before the command writes: its first write finds no reader.
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: "", stderr }));
  });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 141);
});

test("a --timeout that no deadline can hold exits 2 with the usage", async () => {
  for (const timeout of ["1e12", "Infinity", "NaN", "0"]) {
    const result = await run(["--server", "127.0.0.1:1", "--timeout", timeout, "北京"]);
    assert.equal(result.code, 2, `--timeout ${timeout}: ${result.stderr}`);
    assert.match(result.stderr, /--timeout must be a number > 0 and < 1e9/);
  }
});

test("a refusal exits 1 with CODE: message on stderr", async () => {
  const result = await run(["--server", SERVER, "--model", "no_such_model", "北京"]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^tfner-client: NOT_FOUND: .*no_such_model/m);
  assert.equal(result.stdout, "");
});

test("a bad command line exits 2 with the usage", async () => {
  const result = await run(["--server", SERVER, "--version", "1", "--label", "stable", "北京"]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--version and --label exclude each other/);
});

test("bench mode prints exactly one JSON line with the agreed keys", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tfner-node-bench-"));
  after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "texts.txt");
  await writeFile(file, picks.map((i) => PARITY[i]!.text).join("\n") + "\n");
  const result = await run(["--server", SERVER, "--bench", file, "--concurrency", "4", "--requests", "40"]);
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 1, result.stdout);
  const report = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(report), [
    "client", "concurrency", "requests", "errors", "seconds", "texts_per_s", "p50_ms", "p99_ms", "cpu_ms_per_request",
  ]);
  assert.equal(report.client, "node");
  assert.equal(report.concurrency, 4);
  assert.equal(report.requests, 40);
  assert.equal(report.errors, 0);
  for (const key of ["seconds", "texts_per_s", "p50_ms", "p99_ms", "cpu_ms_per_request"]) {
    assert.ok(typeof report[key] === "number" && (report[key] as number) > 0, `${key} = ${String(report[key])}`);
  }
  assert.ok((report.p50_ms as number) <= (report.p99_ms as number));
});
