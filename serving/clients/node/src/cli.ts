#!/usr/bin/env node
/**
 * tfner-client: print the entities of each text as one JSON line, or benchmark a server.
 *
 *   tfner-client --server localhost:8500 "北京欢迎你" "他从上海来"
 *   tfner-client --server localhost:8500 --label canary < texts.txt
 *   tfner-client --server localhost:8500 --bench texts.txt --concurrency 16 --requests 2000
 *
 * Lines have the shape of `python -m tfner.client`, plus UTF-16 offsets:
 * {"text": ..., "entities": [{"label", "start", "end", "text", "score", "utf16_start", "utf16_end"}]}
 */

import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

import { runBench } from "./bench.js";
import { MAX_TIMEOUT_MS, NerClient } from "./client.js";
import type { NerClientOptions } from "./client.js";
import { NerError } from "./errors.js";

const PROG = "tfner-client";

const USAGE = `usage: ${PROG} --server HOST:PORT [options] [TEXT ...]
       ${PROG} --server HOST:PORT --bench FILE --concurrency C --requests N [options]

Prints the entities of each text as one JSON line (texts from the arguments,
or one per line on stdin). Exits 1 with "CODE: message" if the server refuses,
2 on a bad command line or a text (argument or stdin line) that is not UTF-8.

options:
  --server HOST:PORT       gRPC address of TF Serving or tfner.serve (required)
  --model NAME             model name (default ner)
  --version N              pin a model version
  --label LABEL            pin a version label (stable, canary); not with --version
  --timeout SECONDS        deadline of each call, > 0 and < 1e9 (default 10)
  --retries N              retries after UNAVAILABLE or a server's CANCELLED (default 3)
  --chunk-size N           most texts per call (default 16)
  --tls                    use TLS with the system's trust roots
  --load-balancing POLICY  pick_first (default) or round_robin over every DNS address
  --bench FILE             benchmark: Predict calls of one text each, texts from FILE (one per line)
  --concurrency C          benchmark: concurrent callers sharing one client (default 1)
  --requests N             benchmark: timed calls (default 1000)
  -h, --help               show this help`;

/** A mistake in the command line: exit 2 with the usage, like argparse. */
class UsageError extends Error {}

/** Standard input that is not texts: exit 2 too, as in the Python client, with one line saying which. */
class InputError extends Error {}

/** The status a shell reports for a command killed by SIGPIPE (128 + 13), as the Go command is when the reader of
 * its output goes away (`tfner-client ... | head -1`). Node ignores SIGPIPE: its writes fail with EPIPE instead. */
const EXIT_BROKEN_PIPE = 141;

/** Seconds of --timeout, at most: the library's bound (MAX_TIMEOUT_MS), which the Java, Go and Python commands
 * share (~31 years); gRPC's C core, under the Python client, wraps around from ~7e9 s. */
const MAX_TIMEOUT_S = MAX_TIMEOUT_MS / 1000;

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      tokens: true,
      options: {
        server: { type: "string" },
        model: { type: "string", default: "ner" },
        version: { type: "string" },
        label: { type: "string" },
        timeout: { type: "string", default: "10" },
        retries: { type: "string", default: "3" },
        "chunk-size": { type: "string", default: "16" },
        tls: { type: "boolean", default: false },
        "load-balancing": { type: "string", default: "pick_first" },
        bench: { type: "string" },
        concurrency: { type: "string", default: "1" },
        requests: { type: "string", default: "1000" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    return usageError((error as Error).message);
  }
  const { values: flags, positionals: texts } = parsed;
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }

  let options: NerClientOptions;
  try {
    if (flags.server === undefined) throw new UsageError("--server is required");
    if (flags.version !== undefined && flags.label !== undefined) {
      throw new UsageError("--version and --label exclude each other");
    }
    const policy = flags["load-balancing"];
    if (policy !== "pick_first" && policy !== "round_robin") {
      throw new UsageError(`--load-balancing must be pick_first or round_robin, got ${policy}`);
    }
    options = {
      target: flags.server,
      model: flags.model,
      timeoutMs: seconds("--timeout", flags.timeout) * 1000,
      retries: integer("--retries", flags.retries, 0),
      chunkSize: integer("--chunk-size", flags["chunk-size"], 1),
      tls: flags.tls,
      loadBalancing: policy,
      ...(flags.version !== undefined && { version: integer("--version", flags.version, 0) }),
      ...(flags.label !== undefined && { label: flags.label }),
    };
    if (flags.bench !== undefined && texts.length > 0) throw new UsageError("--bench takes no TEXT arguments");
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  const notUtf8 = argumentsNotUtf8(argv);
  const bad = parsed.tokens.filter((token) => token.kind === "positional").findIndex((token) => notUtf8.has(token.index));
  if (bad >= 0) {
    console.error(`${PROG}: text argument ${bad + 1} is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8`);
    return 2;
  }

  const client = new NerClient(options);
  try {
    if (flags.bench !== undefined) {
      const report = await runBench(client, {
        texts: splitLines(await readFile(flags.bench, "utf8")),
        concurrency: integer("--concurrency", flags.concurrency!, 1),
        requests: integer("--requests", flags.requests!, 1),
      });
      console.log(JSON.stringify(report));
      return 0;
    }
    const inputs = texts.length > 0 ? texts : splitLines(await readStdin());
    const results = await client.predict(inputs);
    const lines = inputs.map((text, i) =>
      JSON.stringify({
        text,
        entities: results[i]!.map((e) => ({
          label: e.label,
          start: e.start,
          end: e.end,
          text: e.text,
          score: e.score,
          utf16_start: e.utf16Start,
          utf16_end: e.utf16End,
        })),
      }),
    );
    if (lines.length > 0) process.stdout.write(lines.join("\n") + "\n");
    return 0;
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    if (error instanceof InputError) {
      console.error(`${PROG}: ${error.message}`);
      return 2;
    }
    // A refusal (NerError: "CODE: details"), a text the server cannot take, or an unreadable file.
    if (error instanceof NerError || error instanceof RangeError || error instanceof TypeError) {
      console.error(`${PROG}: ${error.message}`);
      return 1;
    }
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      console.error(`${PROG}: ${(error as Error).message}`);
      return 1;
    }
    throw error;
  } finally {
    client.close();
  }
}

/** Lines without their "\n" and the "\r"s before it, as the other clients read them; a final newline does not
 * start an empty text (checked before the "\r"s go: a last line of only "\r" is an empty text). */
function splitLines(content: string): string[] {
  const lines = content.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.map((line) => line.replace(/\r+$/, ""));
}

/** The indices of the arguments (argv) whose bytes are not UTF-8. Node decodes its arguments with U+FFFD in place
 * of such bytes, silently; on Linux the bytes themselves are in /proc/self/cmdline, whose last argv.length entries
 * are the arguments (node, its options and the script come first). Elsewhere, or when those entries are not the
 * arguments, none is found. */
function argumentsNotUtf8(argv: string[]): Set<number> {
  const notUtf8 = new Set<number>();
  let cmdline: Buffer;
  try {
    cmdline = readFileSync("/proc/self/cmdline");
  } catch {
    return notUtf8;
  }
  const entries: Buffer[] = []; // Each NUL-terminated.
  for (let start = 0; start < cmdline.length; ) {
    const end = cmdline.indexOf(0, start);
    entries.push(cmdline.subarray(start, end < 0 ? cmdline.length : end));
    start = end < 0 ? cmdline.length : end + 1;
  }
  const raw = entries.slice(entries.length - argv.length);
  // The entries are the arguments if they decode, as Node did, to the same strings.
  if (raw.length !== argv.length || raw.some((bytes, i) => bytes.toString("utf8") !== argv[i])) return notUtf8;
  const decoder = new TextDecoder("utf-8", { fatal: true });
  raw.forEach((bytes, i) => {
    try {
      decoder.decode(bytes);
    } catch {
      notUtf8.add(i);
    }
  });
  return notUtf8;
}

/** Standard input as UTF-8 (a leading byte-order mark dropped); a line that is not UTF-8 is an InputError naming
 * it, as in the Go, Java and Python clients (Buffer.toString would turn its bytes into U+FFFD unseen). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const content = Buffer.concat(chunks);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  try {
    return decoder.decode(content);
  } catch {
    let start = 0;
    for (let line = 1; ; line++) {
      const end = content.indexOf(0x0a, start);
      try {
        decoder.decode(content.subarray(start, end < 0 ? content.length : end));
      } catch {
        throw new InputError(`standard input line ${line} is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8`);
      }
      if (end < 0) throw new InputError("standard input is not valid UTF-8");
      start = end + 1;
    }
  }
}

function seconds(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === "" || !(value > 0 && value < MAX_TIMEOUT_S)) {
    throw new UsageError(`${flag} must be a number > 0 and < 1e9, got ${text}`);
  }
  return value;
}

function integer(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`${flag} must be an integer >= ${min}, got ${text}`);
  }
  return value;
}

function usageError(message: string): number {
  console.error(`${USAGE}\n${PROG}: error: ${message}`);
  return 2;
}

process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(EXIT_BROKEN_PIPE); // Quietly: the reader wants no more.
  throw error;
});
process.exitCode = await main(process.argv.slice(2));
