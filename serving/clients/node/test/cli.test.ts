// The command-line example, run as a user would: JSON lines, stdin, exit codes, and the bench mode.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
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
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
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
