"""The benchmarks run end to end on tiny inputs (their speed figures are not judged; that batching merged the
requests of 4 clients into calls is)."""

import json
import os
import subprocess
import sys

from tiny import REPO, SHARED_DATA


def test_serve_load_runs_both_modes_and_reports_merging(tmp_path, export_factory):
    base = str(tmp_path / "ner")
    export_factory(base, 1)
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 20000 }\n"
                        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 8 }\n")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "serve_load.py"), "--model_base_path", base,
         "--clients", "4", "--seconds", "1", "--texts_per_request", "1,2",
         "--batching_parameters_file", str(batching)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Each row: the name padded to 48 characters, then req/s, texts/s, share,
    # p50, p95, p99, errors, requests per call, the server's CPU ms a request
    # ("-" where it does not apply).
    rows = {line[:48].strip(): line[48:].split() for line in result.stdout.splitlines()
            if line.startswith(("tfner.serve,", "in-process,", "gRPC floor,"))}
    assert len(rows) == 8, result.stdout
    for name, (rps, texts_per_s, share, p50, p95, p99, errors, per_call, cpu_ms) in rows.items():
        floor = name.startswith("gRPC floor")  # it runs no model: no share of in-process
        assert float(texts_per_s) > 0 and (share == "-" if floor else share.endswith("%")), (name, rows[name])
        if not name.startswith("in-process"):
            assert int(errors) == 0 and float(p50) <= float(p99) and float(cpu_ms) > 0, (name, rows[name])
        if name.startswith("tfner.serve"):
            # Off: one request a call. On: 4 clients fill calls of up to 4 texts.
            assert float(per_call) == 1.0 if name.endswith("off") else float(per_call) > 1.0, (name, rows[name])
    caps = [line for line in result.stdout.splitlines() if line.startswith("share cap,")]
    assert len(caps) == (2 if len(os.sched_getaffinity(0)) in (2, 3) else 0), result.stdout
    assert "tfner.serve, 2 text(s)/request, batching on" in rows


def test_client_load_reports_every_concurrency_with_the_server_and_clients_pinned_apart(tmp_path, export_factory):
    """The Python client's bench mode (the other languages' run in tests/test_clients.py) through the script."""
    base = str(tmp_path / "ner")
    export_factory(base, 1)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "client_load.py"), "--model_base_path", base,
         "--clients", "python", "--concurrency", "1,4", "--requests", "12", "--rounds", "2", "--texts", "20"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header, columns, *rows = result.stdout.strip().splitlines()
    cpus = sorted(os.sched_getaffinity(0))
    assert ("server on CPU" in header) == (len(cpus) >= 2), header
    assert columns == "client,concurrency,texts_per_s,p50_ms,p99_ms,cpu_ms_per_request,errors"
    table = {tuple(row.split(",")[:2]): [float(v) for v in row.split(",")[2:]] for row in rows}
    assert table.keys() == {("python", "1"), ("python", "4")}, result.stdout
    for texts_per_s, p50, p99, cpu_ms, errors in table.values():
        assert texts_per_s > 0 and 0 < p50 <= p99 and cpu_ms > 0 and errors == 0, result.stdout


def run_crf_decode(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "crf_decode.py"), "--cases", "1x5,3x9", "--rounds", "2",
         "--calls", "1", *args],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def test_crf_decode_compares_with_a_baseline_and_refuses_a_different_one(tmp_path):
    same = run_crf_decode("--baseline", os.path.join(REPO, "tfner", "crf.py"))
    assert same.returncode == 0, same.stderr[-3000:]
    rows = [line for line in same.stdout.splitlines() if "this / baseline" in line]
    assert len(rows) == 2 and all("paths equal" in row and "at most 0.0e+00" in row for row in rows), same.stdout

    # A baseline whose Viterbi answers all zeros is caught, not timed.
    with open(os.path.join(REPO, "tfner", "crf.py"), encoding="utf-8") as f:
        source = f.read()
    broken_line = "    return tf.where(mask, path, tf.zeros_like(path))"
    assert broken_line in source
    broken = tmp_path / "crf_broken.py"
    broken.write_text(source.replace(broken_line, "    return tf.zeros_like(path) + 1"), encoding="utf-8")
    different = run_crf_decode("--baseline", str(broken))
    assert different.returncode == 1 and "Viterbi paths differ" in different.stderr, different.stderr[-3000:]


def test_threads_ab_runs_each_setting_in_its_own_process_and_checks_they_agree(tmp_path, tiny_run):
    # The second setting also turns oneDNN off, which each child reads back from TensorFlow.
    # Twelve real sentences (Resume NER test's first, BMES char-tag lines) keep each pass short.
    source = os.path.join(SHARED_DATA, "resume_ner", "test.char.bmes")
    with open(source, encoding="utf-8") as f:
        sentences = f.read().strip().split("\n\n")[:12]
    texts = tmp_path / "few.char.bmes"
    texts.write_text("\n\n".join(sentences) + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "threads.py"), "--model", tiny_run["export"],
         "--texts", str(texts), "--settings", "0:0,1:1:0", "--batches", "1,5", "--rounds", "2"],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # Each child reports the pools it really runs with, read back from TensorFlow.
    assert ("intra TF's / inter TF's: ready (intra-op TensorFlow's choice, inter-op TensorFlow's choice, "
            "oneDNN on)") in out, out
    assert "intra 1 / inter 1 / oneDNN off: ready (intra-op 1, inter-op 1, oneDNN off)" in out, out
    rows = [line for line in out.splitlines() if line.startswith("| intra")]
    assert len(rows) == 2 and rows[0].count("(x1.00; x1.00)") == 2, out
    assert "12 sentences a pass, 2 rounds" in out and "the same in every pass" in out, out

    bad = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "threads.py"), "--model", "x",
                          "--settings", "1:0:2"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert bad.returncode == 2 and "--settings wants INTRA:INTER[:ONEDNN]" in bad.stderr, bad.stderr


def test_export_latency_times_every_path_and_the_decode_on_its_own(tmp_path, tiny_run):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "export_latency.py"), "--model", tiny_run["export"],
         "--run", tiny_run["run_dir"], "--lengths", "short", "--rounds", "2", "--single_calls", "3",
         "--batch_calls", "1", "--batch_size", "4", "--output", str(tmp_path / "latency.json")],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "SavedModel vs module disagreements: 0" in out, out
    paths = [line.split(" | ")[1] for line in out.splitlines() if line.startswith("| short (20 chars) |")]
    assert paths == ["savedmodel", "module", "forward+decode", "forward", "decode"], out
    assert "CRF decode / forward pass: p50 at batch 1 x" in out, out
    with open(tmp_path / "latency.json", encoding="utf-8") as f:
        rows = json.load(f)["results"]
    assert [(r["path"], r["samples_batch1"], r["samples_batch4"]) for r in rows] == [
        (p, 6, 2) for p in paths]  # 2 rounds x 3 single calls, 2 rounds x 1 batch call, for every path


def test_train_resume_steps_child_trains_under_the_configured_precision(tmp_path):
    """tfner's side of train_resume.py's interleaved rounds (the peer's needs torch, which CI does not install):
    it must run as a run does, here under the mixed_bfloat16 policy a --set asks for, and report its steps."""
    command = [sys.executable, os.path.join(REPO, "benchmarks", "train_resume.py"), "--side", "tfner_steps",
               "--run_dir", str(tmp_path), "--data_dir", os.path.join(SHARED_DATA, "resume_ner"),
               "--vocab", os.path.join(SHARED_DATA, "vocab", "vocab.txt"), "--max_train_sentences", "64",
               "--warmup_steps", "1"]
    for override in ("model.num_layers=1", "model.hidden_dim=16", "model.num_heads=2", "model.intermediate_dim=32",
                     "train.batch_size=8", "train.mixed_precision=mixed_bfloat16"):
        command += ["--set", override]
    result = subprocess.run(command, input="go 2\n", capture_output=True, text=True, timeout=600, cwd=REPO,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "tfner train steps: Keras policy mixed_bfloat16" in lines and "ready" in lines, result.stdout
    measured = json.loads(lines[-1])
    assert measured["tokens"] > 0 and measured["seconds"] > 0, measured


def test_epoch_starts_times_every_epoch_after_the_first_on_both_input_paths():
    resume = os.path.join(SHARED_DATA, "resume_ner")
    for input_path in ("fit", "strategy"):
        result = subprocess.run(
            [sys.executable, os.path.join(REPO, "benchmarks", "epoch_starts.py"), "--config",
             os.path.join(REPO, "configs", "tiny.yaml"), "--epochs", "3", "--input", input_path,
             "--set", f"data.train={resume}/dev.char.bmes", "--set", f"data.dev={resume}/test.char.bmes",
             "--set", "train.batch_size=64"],
            capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        rows = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
        assert rows["input"].startswith(f"{input_path};"), result.stdout
        starts = rows["epoch starts (s, ask for batches -> first step done)"].split()
        assert len(starts) == 2 and all(float(s) > 0 for s in starts), result.stdout  # epochs 2 and 3
        assert 0 <= float(rows["best dev F1"]) <= 1, result.stdout


def test_soak_reports_a_level_where_no_request_succeeded(capsys):
    """A server that refused every request (or never came up) leaves no latency to quote: the report says "-"
    where a figure would be, rather than failing on None after the soak's minutes were spent."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import soak
    finally:
        sys.path.pop(0)
    level = {"clients": 16, "seconds": 60.0, "requests": 0, "errors": {"UNAVAILABLE": 40},
             "requests_per_second": 0.0, "p50_ms": None, "p99_ms": None, "max_ms": None, "versions_answered": [],
             "swap_at_s": [30.0], "first_answer_at_s": {}, "loads": [], "server_exit_code": 1,
             "intervals": [{"t": 10.0, "requests": 0, "errors": 40, "p50_ms": None, "p99_ms": None, "rss_mb": 300.0}]}
    level["memory"] = soak.memory_verdict(level, warmup_seconds=0, bound_mb=50)
    soak.report(level)
    out = capsys.readouterr().out
    assert "errors {'UNAVAILABLE': 40}, p50 - ms, p99 - ms, max - ms" in out, out
    assert out.splitlines()[-1].split() == ["10", "0", "40", "-", "-", "300.0"], out
