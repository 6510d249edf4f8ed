"""tfner turns TensorFlow's oneDNN kernels on when it is imported first, and leaves a user's own choice alone.

TensorFlow decides once, when it loads, so each case runs in a fresh interpreter. On CPUs with AVX-512 VNNI or
AMX TensorFlow turns oneDNN on by itself; the environment variable is then what shows tfner's part.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, SUBPROCESS_ENV

# The children's environment without the variable: pytest's own `import tfner` set it in this process.
ENV_WITHOUT_THE_SETTING = {k: v for k, v in SUBPROCESS_ENV.items() if k != "TF_ENABLE_ONEDNN_OPTS"}

IMPORT_TFNER_THEN_TENSORFLOW = """
import os
import tfner
import tensorflow
from tfner.tf_threads import onednn_state   # what TensorFlow decided, as tfner.serve and tfner.tag log it
print(os.environ["TF_ENABLE_ONEDNN_OPTS"], onednn_state())
"""


@pytest.mark.parametrize("users_setting, expected", [(None, "1 on"), ("0", "0 off"), ("1", "1 on")])
def test_onednn_is_on_unless_the_environment_says_otherwise(users_setting, expected):
    env = dict(ENV_WITHOUT_THE_SETTING)
    if users_setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = users_setting
    done = subprocess.run([sys.executable, "-c", IMPORT_TFNER_THEN_TENSORFLOW], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected.split()


def _imports_tensorflow_itself(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return re.search(r"^\s*import (tensorflow|keras)\b", f.read(), re.MULTILINE) is not None


# Benchmarks import TensorFlow inside functions; unless tfner is imported when the script loads, a function that
# imports TensorFlow before it runs without oneDNN on AVX2 CPUs (profile_step.py's train part once did).
BENCHMARKS = sorted(p for p in glob.glob(os.path.join(REPO_ROOT, "benchmarks", "*.py")) if _imports_tensorflow_itself(p))

LOAD_SCRIPT = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("benchmark", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("script", BENCHMARKS, ids=os.path.basename)
def test_benchmarks_that_load_tensorflow_turn_onednn_on_when_they_load(script):
    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, script], capture_output=True, text=True,
                          env=ENV_WITHOUT_THE_SETTING, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "False"]  # set, and TensorFlow not loaded yet: it reads the setting then
