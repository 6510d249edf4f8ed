"""The Go, Java, Node.js and light Python clients' own suites, against one real tfner.serve.

Each client is an ordinary project under serving/clients/<language>/, tested with its ecosystem's own
command (go test, mvn test, npm test, pytest in a virtualenv without TensorFlow). This module gives them
what they test against, through environment variables (serving/clients/README.md):

    TFNER_SERVER                 127.0.0.1:PORT of tfner.serve: model ner, versions 1 and 2 of the tiny
                                 export, labels stable -> 1 and canary -> 2, batching on
    TFNER_MAX_TEXTS_PER_REQUEST  128: more texts in one call is INVALID_ARGUMENT
    TFNER_MAX_CHARS_PER_REQUEST  20000: more characters in one call is RESOURCE_EXHAUSTED
    TFNER_PARITY                 JSONL of the parity corpus with the answers of the export run in process
    TFNER_SERVE_COMMAND          JSON argv that starts another such server (the suite appends --port P)

A suite that fails, cannot find its toolchain or runs no test fails here.
"""

import json
import os
import re
import subprocess
import sys
import venv

import pytest

from client_corpus import parity_texts, write_parity_file
from conftest import REPO_ROOT
from tiny import SHARED_DATA

pytestmark = pytest.mark.slow

CLIENTS = os.path.join(REPO_ROOT, "serving", "clients")
MAX_TEXTS_PER_REQUEST = 128
MAX_CHARS_PER_REQUEST = 20000

MODELS_CONFIG = """
model_config_list {{
  config {{
    name: "ner"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
}}
"""

BATCHING_CONFIG = """
max_batch_size { value: 128 }
batch_timeout_micros { value: 2000 }
num_batch_threads { value: 1 }
max_enqueued_batches { value: 64 }
"""


@pytest.fixture(scope="module")
def client_env(tmp_path_factory, export_factory, tiny_run, start_server):
    """Starts the shared server, writes the parity file, returns the suites' environment."""
    root = tmp_path_factory.mktemp("clients")
    base = str(root / "export" / "ner")
    for version in (1, 2):
        export_factory(base, version)
    (root / "models.config").write_text(MODELS_CONFIG.format(base=base), encoding="utf-8")
    (root / "batching.config").write_text(BATCHING_CONFIG, encoding="utf-8")
    flags = [
        "--model_config_file", str(root / "models.config"),
        "--enable_batching", "--batching_parameters_file", str(root / "batching.config"),
        "--max_texts_per_request", str(MAX_TEXTS_PER_REQUEST),
        "--max_chars_per_request", str(MAX_CHARS_PER_REQUEST),
    ]
    server = start_server(*flags)

    texts = parity_texts(SHARED_DATA, tiny_run["test"])
    parity = str(root / "parity.jsonl")
    results = write_parity_file(parity, os.path.join(base, "1"), texts)
    # The parity check means little if the model finds nothing: the tiny model tags the demo sentences.
    assert len(texts) >= 200 and sum(map(len, results)) >= 50, (len(texts), sum(map(len, results)))

    server.wait_ready()
    server.wait_health()
    return dict(
        os.environ,
        TFNER_SERVER=server.target,
        TFNER_MAX_TEXTS_PER_REQUEST=str(MAX_TEXTS_PER_REQUEST),
        TFNER_MAX_CHARS_PER_REQUEST=str(MAX_CHARS_PER_REQUEST),
        TFNER_PARITY=parity,
        TFNER_SERVE_COMMAND=json.dumps(
            [sys.executable, "-m", "tfner.serve", "--bind_address", "127.0.0.1", *flags]),
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=REPO_ROOT,
    )


def run_suite(command, cwd, env, timeout=1200):
    """Runs one client's suite; returns its output. Fails with the output's tail when the suite fails."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output[-6000:]}"
    return output


def test_go_client(client_env):
    output = run_suite(["go", "test", "-count=1", "-v", "./..."], os.path.join(CLIENTS, "go"), client_env)
    passed = len(re.findall(r"^--- PASS", output, re.M))
    assert passed > 0 and "--- FAIL" not in output, output[-3000:]


def test_java_client(client_env):
    output = run_suite(["mvn", "-B", "test"], os.path.join(CLIENTS, "java"), client_env)
    runs = [int(n) for n in re.findall(r"Tests run: (\d+), Failures: 0, Errors: 0", output)]
    assert runs and max(runs) > 0, output[-3000:]


def test_node_client(client_env):
    folder = os.path.join(CLIENTS, "node")
    run_suite(["npm", "ci", "--no-audit", "--no-fund"], folder, client_env)
    output = run_suite(["npm", "test"], folder, client_env)
    match = re.search(r"^# pass (\d+)", output, re.M)
    assert match and int(match.group(1)) > 0 and re.search(r"^# fail 0", output, re.M), output[-3000:]


def test_light_python_client_without_tensorflow(client_env, tmp_path_factory):
    """tfner-client in a fresh virtualenv that has no TensorFlow, then its suite."""
    folder = os.path.join(CLIENTS, "python")
    home = str(tmp_path_factory.mktemp("light_venv") / "venv")
    venv.create(home, with_pip=True)
    python = os.path.join(home, "bin", "python")
    run_suite([python, "-m", "pip", "install", "--quiet", folder, "pytest>=9,<10"], folder, client_env)
    env = {k: v for k, v in client_env.items() if k != "PYTHONPATH"}  # Nothing of tfner's tree on the path.
    output = run_suite([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], folder, env)
    match = re.search(r"(\d+) passed", output)
    assert match and int(match.group(1)) > 0 and "failed" not in output, output[-3000:]


def test_generated_stubs_are_fresh():
    """What `generate_stubs.py` writes today is what is committed, for every language."""
    run_suite([sys.executable, os.path.join(CLIENTS, "generate_stubs.py"), "--check"], REPO_ROOT, dict(os.environ))
