"""The command line: JSON lines from arguments or stdin, refusals, and the --bench mode."""

import io
import json
import os
import subprocess
import sys

import pytest

from tfner_client import cli

TEXTS = ["他从上海来，去北京。", "", "Hello 世界 😀 北京上海"]


def run(*args, stdin=None):
    """`tfner-client` (the installed console script) with args and stdin (bytes); returns the CompletedProcess,
    its stdout and stderr decoded."""
    script = os.path.join(os.path.dirname(sys.executable), "tfner-client")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "tfner_client"]
    done = subprocess.run([*command, *args], input=stdin, capture_output=True, timeout=120)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def stdin(data):
    """A stand-in for sys.stdin holding `data` (bytes), with the .buffer the command reads."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")


def test_arguments_print_one_json_line_per_text(server, parity):
    done = run("--server", server, "--label", "stable", *TEXTS)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["text"] for line in lines] == TEXTS
    for line in lines:
        for entity in line["entities"]:
            assert set(entity) == {"label", "start", "end", "text", "score"}
            assert line["text"][entity["start"]:entity["end"]] == entity["text"]


def test_stdin_gives_the_same_lines(server, capsys, monkeypatch):
    assert cli.main(["--server", server, "--version", "1", *TEXTS]) == 0
    from_args = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", stdin(("\n".join(TEXTS) + "\n").encode()))
    assert cli.main(["--server", server, "--version", "1", "--timeout", "5"]) == 0
    assert capsys.readouterr().out == from_args


def test_stdin_drops_a_byte_order_mark_at_its_start(server, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", stdin("\ufeff北京\r\r\n\ufeff上海\n".encode()))
    assert cli.main(["--server", server, "--version", "1", "--timeout", "5"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["北京", "\ufeff上海"]


def test_stdin_that_is_not_utf8_is_refused_naming_the_line():
    done = run("--server", "127.0.0.1:1", stdin="北京\n".encode() + "上海".encode("gbk") + b"\n")
    assert done.returncode == 2
    assert "tfner-client: standard input line 2 is not valid UTF-8" in done.stderr, done.stderr


def test_text_argument_that_is_not_utf8_is_refused_naming_it():
    # Python decodes argv with errors='surrogateescape'; the message must name the argument, not a surrogate.
    done = run("--server", "127.0.0.1:1", "北京", "上海".encode("gbk"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == ("tfner-client: text argument 2 is not valid UTF-8; convert it, e.g. with "
                           "iconv -f GBK -t UTF-8\n"), done.stderr


def test_refusal_exits_1_with_code_and_message(server):
    done = run("--server", server, "--model", "nope", "北京")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("tfner-client: NOT_FOUND: "), done.stderr


def test_bench_prints_one_summary_line(server, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("北京欢迎你\n他从上海来，去北京。\n", encoding="utf-8")
    done = run("--server", server, "--bench", str(texts), "--concurrency", "4", "--requests", "40")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    summary = json.loads(line)
    assert list(summary) == ["client", "concurrency", "requests", "errors", "seconds", "texts_per_s",
                             "p50_ms", "p99_ms", "cpu_ms_per_request"]
    assert summary["client"] == "python" and summary["concurrency"] == 4 and summary["requests"] == 40
    assert summary["errors"] == 0 and summary["seconds"] > 0 and summary["texts_per_s"] > 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    assert summary["cpu_ms_per_request"] > 0


def test_bench_counts_errors(server, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("北京\n", encoding="utf-8")
    done = run("--server", server, "--model", "nope", "--bench", str(texts), "--requests", "5")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["errors"] == 5 and summary["p50_ms"] is None
    assert "NOT_FOUND" in done.stderr


def test_bench_file_that_cannot_be_read_exits_1_saying_why(tmp_path):
    missing = tmp_path / "missing.txt"
    done = run("--server", "127.0.0.1:1", "--bench", str(missing))
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr == f"tfner-client: cannot read {missing}: No such file or directory\n", done.stderr


@pytest.mark.parametrize("timeout", ["inf", "nan", "-1", "0", "1e10"])
def test_timeout_that_is_not_a_finite_positive_number_of_seconds_exits_2(timeout):
    # 1e10 s overflows gRPC's deadline, and inf / nan are no deadline at all: each call would fail at once.
    done = run("--server", "127.0.0.1:1", "--timeout", timeout, "北京")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--timeout" in done.stderr and "seconds > 0 and < 1e9" in done.stderr, done.stderr


def test_response_that_is_not_a_tfner_models_exits_1(empty_answer_server, capsys):
    # A server that answers, but not as a tfner model would, is a server-side failure like a refusal: exit 1,
    # as in the Go, Java and Node.js commands; 2 is for a bad command line or bad input.
    assert cli.main(["--server", empty_answer_server, "北京"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("tfner-client: malformed response from model 'ner': ") and "tfner model" in err, err


def test_output_closed_early_exits_quietly_as_on_sigpipe(server):
    # `tfner-client ... | head -1`: the reader goes away. No traceback; 141 is what a shell reports for the Go
    # command, which SIGPIPE kills.
    script = os.path.join(os.path.dirname(sys.executable), "tfner-client")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "tfner_client"]
    child = subprocess.Popen([*command, "--server", server, "北京欢迎你", "他从上海来"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # Before the child writes: its first write finds no reader.
    stderr = child.stderr.read()
    assert child.wait(timeout=120) == 141
    assert stderr == b""
