"""Which TensorFlow (and so which tensorflow/serving image) can host an export: measured, not assumed.

    python serving/check_tf_versions.py --export export/ner/1 --versions 2.12.1,2.14.1,2.16.2,2.18.1,2.20.0

TF Serving links one fixed TensorFlow (`tensorflow/serving:2.X.Y` is built on TensorFlow 2.X), and loads a
SavedModel the TF1 way: restore the variables, run the init op, then Session::Run on the signature's tensor
names. An export is only as portable as the ops and attributes in its graph. For each version this script
makes a virtualenv with `tensorflow-cpu==VERSION` (cached under --cache), loads the export there through
`tf.compat.v1.saved_model.loader.load` (the Python twin of TF Serving's loader), runs `serving_default` on
a few texts (emoji, mixed script, a long text that needs several windows, an empty string) and compares every
output with this interpreter's TensorFlow on the same texts. It prints one line per version: loads, runs,
equal (tags, offsets and texts exactly; scores within 1e-3, as float32 kernels differ between releases), or
the first error line. A release can run it on its demo export.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv

TEXTS = [
    "张三在北京的清华大学读书。",
    "王小明😀在上海工作，周末去杭州。",
    "Zhang San (张三) works at 阿里巴巴 in 杭州.",
    "",
    "李娜在南京的东南大学任教，" * 40,
]

# Runs inside each version's venv: load through the TF1 session path, run the signature, print JSON.
PROBE = r'''
import json, sys
import tensorflow as tf
path, texts = sys.argv[1], json.loads(sys.argv[2])
graph = tf.Graph()
with tf.compat.v1.Session(graph=graph) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    signature = meta.signature_def["serving_default"]
    fetched = session.run({k: v.name for k, v in signature.outputs.items()},
                          {signature.inputs["text"].name: [t.encode("utf-8") for t in texts]})
def plain(value):
    return [plain(v) for v in value] if hasattr(value, "__len__") and not isinstance(value, bytes) else (
        value.decode("utf-8") if isinstance(value, bytes) else value.item() if hasattr(value, "item") else value)
print(json.dumps({"tf": tf.__version__, "outputs": {k: plain(v) for k, v in fetched.items()}}, ensure_ascii=False))
'''


def run_probe(python, export, texts):
    """(result dict or None, error text) of the probe under `python`."""
    done = subprocess.run([python, "-c", PROBE, export, json.dumps(texts, ensure_ascii=False)],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
    if done.returncode != 0:
        lines = [l for l in done.stderr.splitlines() if l.strip()]
        reason = next((l for l in reversed(lines) if "Error" in l or "error" in l), lines[-1] if lines else "?")
        return None, reason.strip()[:300]
    return json.loads(done.stdout.strip().splitlines()[-1]), ""


def version_python(version, cache):
    """A venv with tensorflow-cpu==version (created once, reused)."""
    home = os.path.join(cache, f"tf-{version}")
    python = os.path.join(home, "bin", "python")
    if not os.path.exists(os.path.join(home, ".installed")):
        venv.create(home, with_pip=True, clear=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", f"tensorflow-cpu=={version}"], check=True)
        open(os.path.join(home, ".installed"), "w").close()
    return python


def same(got, want):
    """Equal outputs; float scores within 1e-3 (float32 kernels differ between releases)."""
    if got.keys() != want.keys():
        return False
    for key in want:
        a, b = json.dumps(got[key]), json.dumps(want[key])
        if a == b:
            continue
        if key != "entity_scores":
            return False
        flat = lambda x: [v for row in x for v in row]  # noqa: E731
        if any(abs(p - q) > 1e-3 for p, q in zip(flat(got[key]), flat(want[key]))):
            return False
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", required=True, help="a version folder, e.g. export/ner/1")
    p.add_argument("--versions", default="2.12.1,2.14.1,2.16.2,2.18.1,2.20.0")
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tfner-tf-versions"))
    args = p.parse_args(argv)
    export = os.path.abspath(args.export)
    reference, error = run_probe(sys.executable, export, TEXTS)
    if reference is None:
        print(f"the export does not load in this TensorFlow: {error}", file=sys.stderr)
        return 2
    print(f"reference: TensorFlow {reference['tf']} (this interpreter); export {export}")
    print("tensorflow,loads_and_runs,outputs_equal,note")
    failures = 0
    for version in args.versions.split(","):
        try:
            python = version_python(version, args.cache)
        except subprocess.CalledProcessError as e:
            print(f"{version},not installed,-,pip failed: {e}")
            failures += 1
            continue
        result, error = run_probe(python, export, TEXTS)
        if result is None:
            print(f"{version},no,-,{error}")
            failures += 1
            continue
        equal = same(result["outputs"], reference["outputs"])
        failures += not equal
        print(f"{version},yes,{'yes' if equal else 'NO'},")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
