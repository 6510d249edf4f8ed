"""The deployment files under serving/ parse, agree with each other, and run.

No Docker engine or tensorflow_model_server binary exists here, so the files
are checked against TF Serving's own config protos (text_format) and against
tfner.serve, which reads the same files.
"""

import glob
import inspect
import os
import re
import shlex
import urllib.request

import pytest
import yaml
from google.protobuf import text_format

from conftest import REPO_ROOT
from tfner import serve
from tfner.server import config as server_config
from tfner.client import NerClient

SERVING = os.path.join(REPO_ROOT, "serving")


def read(*parts):
    with open(os.path.join(SERVING, *parts), encoding="utf-8") as f:
        return f.read()


def yaml_docs(*parts):
    return [d for d in yaml.safe_load_all(read(*parts)) if d is not None]


@pytest.fixture(scope="module")
def k8s():
    """{kind: object} over serving/k8s/*.yaml; the headless Service as "HeadlessService"."""
    objects = {}
    for path in sorted(glob.glob(os.path.join(SERVING, "k8s", "*.yaml"))):
        for doc in yaml_docs("k8s", os.path.basename(path)):
            kind = doc["kind"]
            if kind == "Service" and doc["spec"].get("clusterIP") == "None":
                kind = "HeadlessService"
            assert kind not in objects, f"two {kind} objects"
            objects[kind] = doc
    return objects


@pytest.fixture(scope="module")
def compose():
    return yaml_docs("docker-compose.yml")[0]


def flag_values(args):
    """["--a=1", "--b=x"] -> {"a": "1", "b": "x"}."""
    values = {}
    for arg in args:
        match = re.fullmatch(r"--([a-z_]+)=(.*)", arg)
        assert match, f"{arg!r}: write TF Serving flags as --name=value"
        values[match[1]] = match[2]
    return values


# --------------------------------------------------------------------------
# the TF Serving config files
# --------------------------------------------------------------------------


def test_models_config_parses_with_tf_serving_proto():
    config = text_format.Parse(read("models.config"), server_config.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "ner"
    assert model.model_platform == "tensorflow"
    assert list(model.model_version_policy.specific.versions) == [1, 2]
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}
    (spec,) = server_config.load_model_specs(os.path.join(SERVING, "models.config"))
    assert spec.policy == "specific" and spec.labels == {"stable": 1, "canary": 2}


def test_base_paths_map_onto_export(compose, k8s):
    config = text_format.Parse(read("models.config"), server_config.ModelServerConfig())
    for model in config.model_config_list.config:
        # /models/<name> in the container is export/<name> in the repository.
        assert model.base_path == f"/models/{model.name}"
    volumes = compose["services"]["ner"]["volumes"]
    assert "../export:/models:ro" in volumes
    assert os.path.normpath(os.path.join(SERVING, "../export")) == os.path.join(REPO_ROOT, "export")
    mounts = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "export", "mountPath": "/models", "readOnly": True} in mounts


def test_batching_config_parses_and_is_consistent():
    params = text_format.Parse(read("batching.config"), server_config.BatchingParameters())
    options = server_config.batch_options_from_proto(params)
    assert not options.allowed_batch_sizes  # A CPU config: no padding rows.
    assert 0 < options.batch_timeout_s <= 0.01
    # The client's default chunk fits in one batch (TF Serving refuses more).
    default_chunk = inspect.signature(NerClient).parameters["chunk_size"].default
    assert default_chunk <= options.max_batch_size


def test_unknown_batching_field_names_the_line(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 8 }\nmax_batch_sise { value: 8 }\n")
    with pytest.raises(server_config.ConfigError, match=r"batching.config:2:.*max_batch_sise"):
        server_config.load_batch_options(str(path))


def test_monitoring_config_parses(k8s):
    config = text_format.Parse(read("monitoring.config"), server_config.MonitoringConfig())
    assert config.prometheus_config.enable
    annotations = k8s["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == config.prometheus_config.path
    assert annotations["prometheus.io/port"] == "8501"


# --------------------------------------------------------------------------
# docker compose and Kubernetes
# --------------------------------------------------------------------------


def test_compose_runs_the_official_image_with_the_configs(compose):
    service = compose["services"]["ner"]
    assert service["image"].startswith("tensorflow/serving:")
    assert set(service["ports"]) == {"8500:8500", "8501:8501"}
    flags = flag_values(service["command"])
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        name = os.path.basename(flags[flag])
        assert f"./{name}:{flags[flag]}:ro" in service["volumes"]
        assert os.path.exists(os.path.join(SERVING, name))


def test_deployments_let_tf_serving_start_with_the_labels(compose, k8s):
    """TF Serving's ServerCore::ReloadConfig checks version_labels (UpdateModelVersionLabelMap) before it loads any
    version (AddModelsViaModelConfigList), so at startup every label names a version that is not AVAILABLE yet and
    the server exits with FAILED_PRECONDITION, unless --allow_version_labels_for_unavailable_models=true."""
    config = text_format.Parse(read("models.config"), server_config.ModelServerConfig())
    assert any(model.version_labels for model in config.model_config_list.config)  # what needs the flag
    readme_run = re.search(r"^docker run (?:[^\n]*\\\n)*[^\n]*", read("README.md"), re.MULTILINE)[0]
    readme_argv = shlex.split(readme_run.replace("\\\n", " "))
    readme_flags = readme_argv[next(i for i, a in enumerate(readme_argv) if a.startswith("tensorflow/serving:")) + 1:]
    k8s_args = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    for args in (compose["services"]["ner"]["command"], k8s_args, readme_flags):
        assert flag_values(args).get("allow_version_labels_for_unavailable_models") == "true", args


def test_k8s_objects_fit_together(k8s):
    assert set(k8s) == {"Deployment", "Service", "HeadlessService", "HorizontalPodAutoscaler", "PersistentVolumeClaim"}
    deployment = k8s["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s["Service"]["spec"]["selector"].items() <= labels.items()
    target = k8s["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["export"]["persistentVolumeClaim"]["claimName"] == k8s["PersistentVolumeClaim"]["metadata"]["name"]
    container = pod["spec"]["containers"][0]
    assert container["image"].startswith("tensorflow/serving:")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    assert {p["targetPort"] for p in k8s["Service"]["spec"]["ports"]} == {"grpc", "http"}
    # The headless Service selects the same pods, for clients that balance calls with round_robin.
    headless = k8s["HeadlessService"]["spec"]
    assert headless["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in headless["ports"]} == {"grpc"}
    assert container["livenessProbe"]["tcpSocket"]["port"] == "grpc"
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/models/ner", "port": "http"}
    # Config files come from the ConfigMap mounted at /config.
    flags = flag_values(container["args"])
    assert volumes["config"]["configMap"]["name"] == "tfner-serving-config"
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert os.path.dirname(flags[flag]) == "/config"
        assert os.path.exists(os.path.join(SERVING, os.path.basename(flags[flag])))
    # TF Serving does not drain on SIGTERM: a pod stops cleanly only if every client connection has aged out
    # (closed after max_connection_age, calls in flight given the grace) before the kill, so preStop outlasts both.
    channel = dict(item.split("=") for item in flags["grpc_channel_arguments"].split(","))
    connection_life_s = sum(int(channel[f"grpc.max_connection_age{part}_ms"]) for part in ("", "_grace")) / 1000
    (sleep,) = re.fullmatch(r"sleep (\d+)", container["lifecycle"]["preStop"]["exec"]["command"][-1]).groups()
    assert connection_life_s < int(sleep) < pod["spec"]["terminationGracePeriodSeconds"]


def test_deployments_pin_one_tf_serving_release_and_age_connections_alike(compose, k8s):
    """A :latest image lets a pod the autoscaler adds run another release than its peers; both deployments and the
    README's docker run name one release, and close client connections alike."""
    container = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    readme_image = re.search(r"^\s+(tensorflow/serving:\S+) \\$", read("README.md"), re.MULTILINE)[1]
    compose_image = re.sub(r"\$\{TF_SERVING_VERSION:-([^}]+)\}", r"\1", compose["services"]["ner"]["image"])
    assert container["image"] == compose_image == readme_image == "tensorflow/serving:2.21.0"
    assert container.get("imagePullPolicy", "IfNotPresent") == "IfNotPresent"
    k8s_channel = flag_values(container["args"])["grpc_channel_arguments"]
    assert flag_values(compose["services"]["ner"]["command"])["grpc_channel_arguments"] == k8s_channel


def test_both_deployments_run_onednn_as_tfner_does(compose, k8s):
    # tfner/__init__.py turns oneDNN on in tfner's own processes; TF Serving gets the same from its environment.
    container = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    k8s_env = {e["name"]: e["value"] for e in container["env"]}
    assert compose["services"]["ner"]["environment"] == k8s_env == {"TF_ENABLE_ONEDNN_OPTS": "1"}


@pytest.mark.parametrize("source", ["compose", "k8s"])
def test_tfner_serve_accepts_the_deployed_flags(source, compose, k8s, tmp_path):
    if source == "compose":
        args = compose["services"]["ner"]["command"]
    else:
        args = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    # The container paths, rewritten to this checkout.
    local = [a.replace("/config/", SERVING + "/") for a in args]
    if "--rest_api_port=8501" not in local:
        local.append("--rest_api_port=8501")  # The image's entrypoint adds it.
    parsed = serve.build_parser().parse_args(local)
    server = serve.server_from_args(parsed)
    assert server.predictor.batcher is not None
    assert server.predictor.limits.max_texts == server.predictor.batcher.options.max_batch_size
    server.predictor.stop()
    assert server.store.model_names() == ["ner"]


def test_readiness_probe_route_is_served(servers, k8s):
    """The readiness path answers 200 on a server with "ner" loaded."""
    container = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    path = container["readinessProbe"]["httpGet"]["path"]
    with urllib.request.urlopen(servers[0].rest_url + path, timeout=10) as response:
        assert response.status == 200


def test_tfner_serve_runs_serving_models_config(servers):
    """The shared config_server was started from serving/models.config (base path rewritten)."""
    server = servers[0]
    with open(server.config_path, encoding="utf-8") as f:
        used = f.read()
    assert used.replace(server.base_path, "/models/ner") == read("models.config")
    assert '"ner": [1, 2]' in server.log_text()


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------


def test_readme_shows_the_commands():
    readme = read("README.md")
    for command in ("docker run", "docker compose -f serving/docker-compose.yml up",
                    "kubectl create configmap tfner-serving-config", "kubectl apply -f serving/k8s/",
                    "python -m tfner.client", "python -m tfner.serve"):
        assert command in readme, command
    # Every tfner.serve command in the README parses with tfner.serve's flags.
    commands = re.findall(r"^python -m tfner\.serve((?:[^\n]*\\\n)*[^\n]*)", readme, re.MULTILINE)
    assert commands
    for command in commands:
        argv = shlex.split(command.replace("\\\n", " "))
        serve.build_parser().parse_args(argv)


def test_the_documented_rollout_keeps_every_label_served():
    """models.config's rollout edits, applied in turn from the file as shipped: each parses and is accepted by
    tfner.serve (every label names a served version: TF Serving would take an edit that drops a labelled version,
    then answer NOT_FOUND for that label), and a label only moves to a version the edit before already served (TF
    Serving refuses the edit otherwise, and never loads the version)."""
    steps = re.findall(r"^#\s+rollout edit \d+: versions ([\d ]+); stable (\d+); canary (\d+)", read("models.config"),
                       re.MULTILINE)
    assert len(steps) == 3, steps
    (served,) = server_config.load_model_specs(os.path.join(SERVING, "models.config"))
    versions, labels = set(served.versions), dict(served.labels)
    for number, (listed, stable, canary) in enumerate(steps, 1):
        text = read("models.config")
        text = re.sub(r"specific \{[^}]*\}", "specific {" + "".join(f" versions: {v}" for v in listed.split()) + " }",
                      text)
        text = re.sub(r'(key: "stable"\s+value: )\d+', rf"\g<1>{stable}", text)
        text = re.sub(r'(key: "canary"\s+value: )\d+', rf"\g<1>{canary}", text)
        (spec,) = server_config.load_model_specs(f"rollout edit {number}", text)  # refuses a label on no version
        for label, version in spec.labels.items():
            assert version == labels[label] or version in versions, \
                f"rollout edit {number} moves {label} to {version}, not loaded before it"
        versions, labels = set(spec.versions), dict(spec.labels)
    assert versions == {3} and labels == {"stable": 3, "canary": 3}
