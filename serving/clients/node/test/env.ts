/**
 * The real tfner.serve the suite runs against, configured only by environment
 * variables (README.md, "Tests"). A missing variable throws on import, so every
 * test file that needs a server fails instead of skipping.
 */

import { readFileSync } from "node:fs";

function required(name: string, what: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set: ${what} (see serving/clients/node/README.md, "Tests")`);
  }
  return value;
}

function integer(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
}

/** "127.0.0.1:PORT" of a running tfner.serve: model ner, versions 1 and 2, labels stable -> 1, canary -> 2. */
export const SERVER = required("TFNER_SERVER", "the host:port of a running `python -m tfner.serve`");

/** Its --max_texts_per_request and --max_chars_per_request. */
export const MAX_TEXTS = integer("TFNER_MAX_TEXTS_PER_REQUEST", 128);
export const MAX_CHARS = integer("TFNER_MAX_CHARS_PER_REQUEST", 20_000);

/** argv that starts another tfner.serve of the same model; the test appends --port P. */
export const SERVE_COMMAND: string[] = (() => {
  const raw = required("TFNER_SERVE_COMMAND", "a JSON array, the argv of another `python -m tfner.serve`");
  let argv: unknown;
  try {
    argv = JSON.parse(raw);
  } catch (error) {
    throw new Error(`TFNER_SERVE_COMMAND is not JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw new Error(`TFNER_SERVE_COMMAND must be a non-empty JSON array of strings, got ${raw}`);
  }
  return argv as string[];
})();

/** One expected answer, computed in process from the same SavedModel (code-point offsets). */
export interface ParityRecord {
  text: string;
  entities: { label: string; start: number; end: number; text: string; score: number }[];
}

/** TFNER_PARITY's records, in file order. */
export const PARITY: ParityRecord[] = (() => {
  const path = required("TFNER_PARITY", "a JSONL file of expected answers");
  const records = readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line, i) => {
      try {
        return JSON.parse(line) as ParityRecord;
      } catch (error) {
        throw new Error(`${path}:${i + 1}: not JSON: ${(error as Error).message}`);
      }
    });
  if (records.length === 0) throw new Error(`${path} has no records`);
  return records;
})();

/** The parity record of the longest text (the 3,000-character one). */
export const LONGEST: ParityRecord = PARITY.reduce((a, b) => (b.text.length > a.text.length ? b : a));
