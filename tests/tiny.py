"""A tiny tfner run shared by the tests: the demo corpus, cut small, and a 2-layer hidden-16 model."""

import os
import subprocess
import sys

from tfner import demo
from tfner.config import Config, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("TFNER_DATA", os.path.join(REPO, "..", "shared", "data"))

TINY_OVERRIDES = [
    "model.num_layers=2",
    "model.hidden_dim=16",
    "model.num_heads=2",
    "model.intermediate_dim=32",
    "data.max_seq_length=32",  # demo sentences run to ~40 characters: training splits them, export windows them
    "train.epochs=2",
    "train.batch_size=16",
    # The demo corpus is varied (tfner/demo.py): in 40 steps, 5e-3 / 1e-2 reached dev F1 0.32, these 0.63.
    "train.learning_rate=1e-2",
    "train.head_learning_rate=3e-2",
    "train.checkpoint_every_steps=10",
    "train.distribute=one_device",
    "export.window_overlap=8",
]


def tiny_config(tmp_dir: str, overrides: list[str] = (), sizes=(315, 64, 64)) -> Config:
    """A Config for the tiny model on a small demo corpus written under tmp_dir/data.

    315 training sentences are 320 pieces at max_seq_length 32 (5 are split): an epoch is one pass over them, 22
    steps of up to 16 from 4 length buckets, which tests/test_faults.py counts on.
    """
    paths = demo.write_corpus(os.path.join(tmp_dir, "data"), sizes=sizes)
    config = load_config(demo.DEMO_CONFIG, [
        f"run_dir={os.path.join(tmp_dir, 'run')}",
        f"export.dir={os.path.join(tmp_dir, 'export', 'ner')}",
        f"data.train={paths['train']}",
        f"data.dev={paths['dev']}",
        f"data.test={paths['test']}",
        *TINY_OVERRIDES,
        *overrides,
    ])
    return config


def run_python(code: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (nothing imported but what the code imports)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}, cwd=REPO,
    )


def train_tiny(tmp_dir: str, overrides: list[str] = ()) -> dict:
    """Trains the tiny model in-process and returns train()'s summary (with the export path)."""
    from tfner.train import train

    return train(tiny_config(tmp_dir, overrides))
