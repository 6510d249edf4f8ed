"""The command line: one JSON line of entities per text, or a load benchmark.

    tfner-client --server localhost:8500 "北京欢迎你" "他从上海来"
    tfner-client --server localhost:8500 --label canary < texts.txt
    tfner-client --server localhost:8500 --bench texts.txt --concurrency 16 --requests 2000
"""

import argparse
import dataclasses
import json
import os
import sys

import grpc

from tfner_client.bench import run_bench
from tfner_client.client import LOAD_BALANCING_POLICIES
from tfner_client.client import MAX_TIMEOUT_S
from tfner_client.client import NerClient
from tfner_client.errors import MalformedResponseError
from tfner_client.errors import NerError

# The status a shell reports for a command killed by SIGPIPE (128 + 13), as the Go command is when its reader
# goes away (`tfner-client ... | head -1`).
EXIT_BROKEN_PIPE = 141


def build_parser(prog):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Print the entities of each text as one JSON line (texts from the "
                    "arguments, or one per line on stdin), or benchmark a server with --bench.",
    )
    p.add_argument("texts", nargs="*", help="Texts; none: read lines from stdin.")
    p.add_argument("--server", required=True, help="host:port of the gRPC API.")
    p.add_argument("--model", default="ner")
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--version", type=int)
    pin.add_argument("--label")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="Seconds per call, > 0 and < 1e9. Default 10.")
    p.add_argument("--retries", type=int, default=3, help="Retries after UNAVAILABLE. Default 3.")
    p.add_argument("--chunk_size", type=int, default=16, help="Most texts per call. Default 16.")
    p.add_argument("--tls", action="store_true", help="Use TLS, trusting the system's root certificates.")
    p.add_argument("--ca_file", help="Use TLS, trusting the CA certificates in this PEM file.")
    p.add_argument("--load_balancing", choices=LOAD_BALANCING_POLICIES,
                   help="round_robin: spread calls over every address of the server's DNS name.")
    b = p.add_argument_group("benchmark (prints one JSON line of figures instead of entities)")
    b.add_argument("--bench", metavar="FILE", help="Texts to send, one per line, cycled through.")
    b.add_argument("--concurrency", type=int, default=1, help="Callers sharing one client. Default 1.")
    b.add_argument("--requests", type=int, default=200, help="Timed calls of one text each. Default 200.")
    return p


def _seconds(value):
    """--timeout's type: a finite number of seconds that gRPC can add to the clock (inf, nan and 1e10 fail every
    call with DEADLINE_EXCEEDED)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is None or not 0 < seconds < MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"give seconds > 0 and < 1e9, e.g. 2.5; got {value!r}")
    return seconds


def main(argv=None, prog="tfner-client"):
    """Runs the command line; returns the exit status (1: the server refused or answered nonsense, 2: bad input,
    141: standard output closed early)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.bench and args.texts:
        parser.error("give texts or --bench FILE, not both")
    try:
        args.texts = _utf8_arguments(args.texts)
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    credentials = None
    if args.ca_file:
        try:
            with open(args.ca_file, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        except OSError as e:
            parser.error(f"--ca_file: {e}")

    try:
        with NerClient(args.server, model=args.model, version=args.version, label=args.label,
                       timeout=args.timeout, retries=args.retries, chunk_size=args.chunk_size,
                       tls=args.tls, credentials=credentials, load_balancing=args.load_balancing) as client:
            if args.bench:
                return _bench(client, args, prog)
            texts = args.texts or _stdin_lines()
            results = client.predict(texts)
    except NerError as e:
        print(f"{prog}: {e.code().name}: {e.message}", file=sys.stderr)
        return 1
    except MalformedResponseError as e:  # A ValueError, but the server's fault, not the input's.
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except (TypeError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    return _print_lines(
        json.dumps({"text": text, "entities": [dataclasses.asdict(e) for e in entities]}, ensure_ascii=False)
        for text, entities in zip(texts, results)
    )


def _utf8_arguments(texts):
    """The text arguments, decoded as the UTF-8 they must be. Python decodes argv with the locale's encoding and
    errors='surrogateescape' (bytes that are not UTF-8 become lone surrogates, which predict would refuse as
    such); os.fsencode gives back the bytes the process was given. A ValueError names the first argument that is
    not UTF-8, as the Go command does."""
    decoded = []
    for number, text in enumerate(texts, 1):
        try:
            decoded.append(os.fsencode(text).decode("utf-8"))
        except UnicodeError:  # Decoding, or encoding a lone surrogate that main(argv) was given as it is.
            raise ValueError(f"text argument {number} is not valid UTF-8; convert it, e.g. with "
                             "iconv -f GBK -t UTF-8") from None
    return decoded


def _print_lines(lines):
    """Prints each line on stdout; 0, or EXIT_BROKEN_PIPE, quietly, when the reader went away (`| head -1`)."""
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()  # Here, not at exit, where a broken pipe would be reported as an ignored exception.
    except BrokenPipeError:
        # Python flushes stdout again at exit and would fail the same way: point it at devnull first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return 0


def _stdin_lines():
    """Standard input's lines, split at \n with the \r's before it dropped, without a byte-order mark at the
    start (Windows editors write one), as the Go, Java and Node.js clients read them. Read as bytes: a line that
    is not UTF-8 is a ValueError naming it (Python's own decoding would name no line, or, in the C locale, turn
    the bytes into lone surrogates that the client then refuses as such)."""
    data = sys.stdin.buffer.read().removeprefix(b"\xef\xbb\xbf")
    lines = data.split(b"\n")
    if lines[-1] == b"":  # a final newline does not start an empty text
        lines.pop()
    texts = []
    for number, line in enumerate(lines, 1):
        try:
            texts.append(line.rstrip(b"\r").decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"standard input line {number} is not valid UTF-8; convert it, e.g. with "
                             "iconv -f GBK -t UTF-8") from None
    return texts


def _bench(client, args, prog):
    try:
        with open(args.bench, encoding="utf-8") as f:
            texts = f.read().splitlines()
    except OSError as e:  # Exit 1, as the Go and Node.js commands do for a file they cannot read.
        print(f"{prog}: cannot read {args.bench}: {e.strerror or e}", file=sys.stderr)
        return 1
    summary = run_bench(client, texts, args.concurrency, args.requests)
    first_error = summary.pop("first_error")
    if first_error:
        print(f"{prog}: {summary['errors']} of {args.requests} calls failed; the first: {first_error}", file=sys.stderr)
    return _print_lines([json.dumps(summary)])
