"""Time to first answer of a client command line: process start -> first JSON line.

    python measure_first_answer.py --runs 5 -- tfner-client --server 127.0.0.1:8500 "他从上海来"

Starts the command `--runs` times, one after another, and prints the median and
every run's seconds from `Popen` to the first line on its stdout (the JSON line
of the first text): interpreter start, imports, channel connect and one call.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def first_line_seconds(command):
    """Seconds from starting `command` to its first stdout line; fails if it exits without one."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.stdout.close()
    if proc.wait() != 0 or not line.strip():
        raise RuntimeError(f"{command[0]} exited {proc.returncode} without an answer")
    json.loads(line)  # A real answer, not a warning on stdout.
    return elapsed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("command", nargs=argparse.REMAINDER, help="the client command line, after --")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command to time after --")
    runs = [first_line_seconds(command) for _ in range(args.runs)]
    print(json.dumps({"median_s": round(statistics.median(runs), 3), "runs_s": [round(r, 3) for r in runs]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
