"""The package's dependency rule, checked on the import graph (see tfner/__init__.py)."""

import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, SUBPROCESS_ENV

PACKAGE = os.path.join(REPO_ROOT, "tfner")
SERVER = "tfner.server"
SERVER_ENTRY_POINTS = {"tfner.serve"}
# Modules both halves use, which import nothing of tfner themselves: a change elsewhere cannot reach the server
# through them.
SHARED_LEAVES = {"tfner.tf_threads"}


def module_name(path):
    relative = os.path.relpath(path, REPO_ROOT)[: -len(".py")].replace(os.sep, ".")
    return relative[: -len(".__init__")] if relative.endswith(".__init__") else relative


def tfner_imports(path):
    """The tfner modules a file imports (`from tfner import x` counts as tfner.x)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "tfner")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "tfner":
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if is_module(name)}


def is_module(name):
    path = os.path.join(REPO_ROOT, *name.split("."))
    return os.path.isfile(path + ".py") or os.path.isfile(os.path.join(path, "__init__.py"))


def import_graph():
    graph = {}
    for folder, _, files in os.walk(PACKAGE):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                graph[module_name(path)] = tfner_imports(path)
    return graph


def in_server(name):
    return name == SERVER or name.startswith(SERVER + ".")


def test_the_graph_is_read():
    graph = import_graph()
    assert "tfner.server.model_server" in graph and "tfner.train" in graph
    assert "tfner.server.model_store" in graph["tfner.server.model_server"]
    assert "tfner.model" in graph["tfner.train"]


def test_the_server_imports_nothing_of_tfner_outside_itself():
    bad = {module: sorted(name for name in imports if name != "tfner" and not in_server(name))
           for module, imports in import_graph().items() if in_server(module)}
    assert not {m: names for m, names in bad.items() if names}


def test_the_shared_leaves_import_nothing_of_tfner():
    graph = import_graph()
    assert {leaf: sorted(graph[leaf] - {"tfner"}) for leaf in SHARED_LEAVES} == {leaf: [] for leaf in SHARED_LEAVES}


def test_only_the_entry_points_import_the_server():
    bad = {module: sorted(name for name in imports if in_server(name))
           for module, imports in import_graph().items()
           if not in_server(module) and module not in SERVER_ENTRY_POINTS}
    assert not {m: names for m, names in bad.items() if names}


@pytest.mark.parametrize("module", ["tfner.serve"])
def test_the_server_loads_no_training_code_nor_keras_hub(module):
    """What the interpreter really loads, beyond what the source says.

    (Keras itself comes in with `import tensorflow` in TF 2.21, so it is not
    checked; keras-hub, which only model building needs, is.)
    """
    probe = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('tfner', 'keras_hub')))\n"
        "print('\\n'.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=SUBPROCESS_ENV, cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert module in loaded
    outside = {m for m in loaded if m != "tfner" and m != module and not in_server(m)} - SHARED_LEAVES
    assert not outside, f"{module} loads {sorted(outside)}"
