"""The command line: one JSON line of entities per text, or a load benchmark.

    tfner-client --server localhost:8500 "北京欢迎你" "他从上海来"
    tfner-client --server localhost:8500 --label canary < texts.txt
    tfner-client --server localhost:8500 --bench texts.txt --concurrency 16 --requests 2000
"""

import argparse
import dataclasses
import json
import sys

import grpc

from tfner_client.bench import run_bench
from tfner_client.client import LOAD_BALANCING_POLICIES
from tfner_client.client import NerClient
from tfner_client.errors import NerError


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
    p.add_argument("--timeout", type=float, default=10.0, help="Seconds per call. Default 10.")
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


def main(argv=None, prog="tfner-client"):
    """Runs the command line; returns the exit status (1: the server refused, 2: bad input)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.bench and args.texts:
        parser.error("give texts or --bench FILE, not both")
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
    except (TypeError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    for text, entities in zip(texts, results):
        line = {"text": text, "entities": [dataclasses.asdict(e) for e in entities]}
        print(json.dumps(line, ensure_ascii=False))
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
    with open(args.bench, encoding="utf-8") as f:
        texts = f.read().splitlines()
    summary = run_bench(client, texts, args.concurrency, args.requests)
    first_error = summary.pop("first_error")
    if first_error:
        print(f"{prog}: {summary['errors']} of {args.requests} calls failed; the first: {first_error}", file=sys.stderr)
    print(json.dumps(summary))
    return 0
