"""The deployment, checked offline.

- The image: hadolint, and what the Dockerfile must say (pinned base, two stages, nothing built or
  installed in the final stage, a numeric non-root user, an exec-form ``recall-worker run`` entrypoint,
  a build context that holds what the build copies).
- The manifests: each overlay built with kustomize, every object validated against the Kubernetes schemas
  (custom resources against ``crd_schemas``), and what production needs of them asserted: probes,
  security context, resources, grace period against the shutdown budget, the ledger's migration step, the
  key as a Secret file, rules hot reload, scaling (on the queue the overlay's prefix names, also in a copied
  or a new overlay), disruption budget, network policy, monitoring, alerts (and the README's table of them),
  the staging emulator; the report intake beside the worker (probes, security, secrets, CPU autoscaling,
  disruption budget, network policy, monitoring, the example Ingress) and selectors that never mix the
  worker's pods with the intake's.
- The process: the installed entry point started the way the Deployment starts it (its environment, its
  Secret and ConfigMap files, its arguments), probed on the manifest's paths and stopped with SIGTERM; the
  migration step run the way its init container runs it, on a fresh and on an up-to-date ledger.

Under ``CI=true`` a missing tool (hadolint, kubectl or kustomize) is a failure; elsewhere the tests that
need it are skipped, naming it.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import typing
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from alembic.script import ScriptDirectory

from tests.deploy.crd_schemas import SCHEMAS
from tests.services import free_port
from worker.broker.topology import QueueNames, Topology
from worker.config import Settings, parse_intake_keys
from worker.ledger.migrate import MIGRATIONS
from worker.observability import Metrics
from worker.results import Status
from worker.tim.regions import REGION_DOMAINS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
OVERLAYS = ("example", "staging")
OVERLAY_DIR = DEPLOY / "k8s" / "overlays"
# The component every overlay includes so that its RECALL_QUEUE_PREFIX also names the queue KEDA watches.
QUEUE_NAME_COMPONENT = DEPLOY / "k8s" / "components" / "queue-name"
# The oldest Kubernetes minor still commonly run, and the newest the schemas ship.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
BIN = Path(sys.executable).parent
WORKER = "recall-worker"
EMULATOR = "chat-emulator"
BASE = DEPLOY / "k8s" / "base"
# The report intake (`recall-worker intake`): Deployment, Service, HPA, PDB, NetworkPolicy, ServiceMonitor.
INTAKE = "recall-intake"
INTAKE_PORT = 9104
# How long the intake takes to stop on SIGTERM (its contract: about 10 s).
INTAKE_STOP_S = 10
# Paths the intake serves that must stay inside the cluster.
INTERNAL_PATHS = ("/metrics", "/healthz", "/readyz", "/openapi.json")

# What the alerts may use besides the worker's own metrics: kube-state-metrics and KEDA's operator.
EXTERNAL_METRICS = {
    "kube_deployment_status_replicas_available",
    "kube_deployment_status_replicas_unavailable",
    "keda_scaler_metrics_value",
}
# The metrics the README's "Operating" table documents.
DOCUMENTED_METRICS = (
    "recall_jobs_total",
    "recall_job_duration_seconds",
    "recall_job_retries_total",
    "recall_jobs_dead_lettered_total",
    "recall_jobs_in_flight",
    "recall_recalls_total",
    "recall_rule_matches_total",
    "recall_tim_calls_total",
    "recall_tim_call_duration_seconds",
    "recall_tim_retries_total",
    "recall_tim_rate_limit_wait_seconds_total",
    "recall_results_repeated_total",
    "recall_credentials_ok",
    "recall_credential_errors_total",
)
# Volume types the "restricted" Pod Security Standard allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}


def tool(name: str, *alternatives: str) -> str:
    """The path of a command-line tool (or of the first alternative found), this environment's own first:
    skip without any, but under CI their absence is a failure."""
    for candidate in (name, *alternatives):
        found = shutil.which(candidate, path=str(BIN)) or shutil.which(candidate)
        if found is not None:
            return found
    wanted = " or ".join((name, *alternatives))
    if os.environ.get("CI") == "true":
        pytest.fail(f"{wanted} is needed to check the deployment offline", pytrace=False)
    pytest.skip(f"{wanted} is not installed")


def kustomize_command(path: Path) -> list[str]:
    """``kubectl kustomize`` (kustomize built into kubectl), or else a standalone ``kustomize build``."""
    found = tool("kubectl", "kustomize")
    return [found, "build", str(path)] if Path(found).name == "kustomize" else [found, "kustomize", str(path)]


# the Dockerfile ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"the stage from {self.image} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages (FROM resolved) of a Dockerfile."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # comments may sit inside continued lines too
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    global_args: dict[str, str] = {}
    stages: list[tuple[str, str | None, list[Instruction]]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append((image, name, []))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            arg_name, _, default = args.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1][2].append(Instruction(keyword, args))
    return global_args, [Stage(image, name, tuple(instructions)) for image, name, instructions in stages]


@cache
def stages() -> tuple[Stage, ...]:
    return tuple(parse_dockerfile(DOCKERFILE.read_text())[1])


def image_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            name, sep, value = word.partition("=")
            assert sep, f"ENV {args!r}: use the NAME=value form"
            env[name] = value
    return env


def exec_form(args: str, keyword: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"{keyword} {args} is in shell form: the worker would not be PID 1 and miss SIGTERM")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--config", str(DEPLOY / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_parser_resolves_args_and_stages() -> None:
    text = (
        "ARG BASE=python:3.12.7-slim-bookworm\n# c\nFROM ${BASE} AS build\n"
        "RUN a \\\n  # inside\n  b\nFROM $BASE\nUSER 1:1\n"
    )
    args, parsed = parse_dockerfile(text)
    assert args == {"BASE": "python:3.12.7-slim-bookworm"}
    assert [(s.image, s.name) for s in parsed] == [
        ("python:3.12.7-slim-bookworm", "build"),
        ("python:3.12.7-slim-bookworm", None),
    ]
    assert parsed[0].all("RUN") == ["a  b"]
    assert parsed[1].last("USER") == "1:1"


def test_the_base_images_are_pinned_the_final_one_slim() -> None:
    names = {s.name for s in stages() if s.name}
    releases = set()
    for stage in stages():
        if stage.image in names:
            continue
        found = re.fullmatch(r"python:(3\.1[1-9]\.\d+)-(slim-)?([a-z]+)(@sha256:[0-9a-f]{64})?", stage.image)
        assert found, f"{stage.image}: pin an exact Python patch release and Debian release (never latest)"
        releases.add((found.group(1), found.group(3)))
    # The build stage may be the full image (it compiles the extension); the virtualenv it makes only runs
    # on the same Python and Debian release.
    assert len(releases) == 1, f"every stage on the same Python and Debian release: {releases}"
    assert "-slim-" in stages()[-1].image, "the final stage runs on the slim image"


def test_the_final_stage_carries_only_the_virtualenv_and_runs_unprivileged() -> None:
    assert len(stages()) >= 2, "multi-stage: build in one stage, run from another"
    final = stages()[-1]
    earlier = {s.name for s in stages()[:-1]}
    copies = final.all("COPY") + final.all("ADD")
    assert copies, "the final stage copies the built virtualenv"
    for args in copies:
        source_stage = re.search(r"--from=(\S+)", args)
        assert source_stage and source_stage.group(1) in earlier, f"COPY {args}: only from the build stage"
    for run in final.all("RUN"):
        for forbidden in ("gcc", "g++", "build-essential", "make ", "apt-get", "apk ", "pip install", "-dev"):
            assert forbidden not in run, f"the final stage must not install build tools: RUN {run}"
    user, _, group = final.last("USER").partition(":")
    assert user.isdigit() and int(user) >= 1000, "a numeric non-root USER (runAsNonRoot verifies it)"
    assert not group or (group.isdigit() and int(group) != 0)
    env = image_env(final)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1" and env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PATH", "").startswith("/opt/venv/bin:")


def test_the_entrypoint_is_the_worker_in_exec_form_and_matches_the_deployment() -> None:
    final = stages()[-1]
    entrypoint = exec_form(final.last("ENTRYPOINT"), "ENTRYPOINT")
    command = exec_form(final.last("CMD"), "CMD")
    assert entrypoint == [WORKER] and command == ["run"]
    assert final.last("STOPSIGNAL") in ("SIGTERM", "15")
    for overlay in OVERLAYS:
        container = worker_container(overlay)
        assert "command" not in container, "keep the image's ENTRYPOINT"
        assert container.get("args", command) == ["run"]
        port = container_port(container, "metrics")
        assert str(port) in final.all("EXPOSE")[0].split()
        assert int(final.last("USER").split(":")[0]) == pod_spec(overlay)["securityContext"]["runAsUser"]


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether the build context leaves ``path`` out: the last pattern matching it or a parent wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        if pattern.startswith("**/"):
            tail = pattern.removeprefix("**/")
            hit = any(
                fnmatch.fnmatchcase("/".join(parts[i:j]), tail)
                for j in range(1, len(parts) + 1)
                for i in range(j)
            )
        else:
            hit = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_the_build_context_holds_what_the_build_copies_and_nothing_else() -> None:
    ignore = DEPLOY / "Dockerfile.dockerignore"
    patterns = [
        line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    sources: list[str] = []
    for stage in stages():
        for args in stage.all("COPY"):
            if "--from=" not in args:
                sources += [w for w in shlex.split(args) if not w.startswith("--")][:-1]
    assert sources, "the build stage copies the project"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(patterns, source), f"{source} is left out of the build context"
    built_here = {".so", ".c"}  # the extension, compiled in place by an editable install: built afresh there
    packaged = [p for p in ROOT.glob("worker/**/*") if p.is_file() and "__pycache__" not in p.parts]
    packaged += [p for p in ROOT.glob("rules/**/*") if p.is_file() and "__pycache__" not in p.parts]
    packaged = [p for p in packaged if p.suffix not in built_here]
    assert packaged
    for path in packaged:
        assert not dockerignore_excludes(patterns, path.relative_to(ROOT).as_posix()), path
    for outside in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        "deploy/Dockerfile",
        "worker/__pycache__/x.pyc",
        "rules/_speedups.c",
        "rules/_speedups.cpython-312-x86_64-linux-gnu.so",
    ):
        assert dockerignore_excludes(patterns, outside), f"{outside} should stay out of the build context"


# the manifests -------------------------------------------------------------------------------------------


def build(path: Path) -> tuple[dict[str, Any], ...]:
    """The objects a kustomization renders."""
    result = subprocess.run(kustomize_command(path), capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    docs = tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
    assert docs, f"{path} renders nothing"
    return docs


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return build(OVERLAY_DIR / overlay)


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in rendered(overlay) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in rendered(overlay) if d["kind"] == kind]


def pod_spec(overlay: str, deployment: str = WORKER) -> dict[str, Any]:
    spec: dict[str, Any] = one(overlay, "Deployment", deployment)["spec"]["template"]["spec"]
    return spec


def pod_labels(overlay: str, deployment: str = WORKER) -> dict[str, str]:
    labels: dict[str, str] = one(overlay, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    return labels


def worker_container(overlay: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(overlay)["containers"]
    assert len(containers) == 1, "the worker's pod runs the worker only"
    return containers[0]


def migration_container(overlay: str) -> dict[str, Any]:
    """The init container that brings the ledger's schema up to date before the worker starts."""
    found: list[dict[str, Any]] = [
        c
        for c in pod_spec(overlay).get("initContainers", [])
        if c.get("args", [])[:2] == ["ledger", "upgrade"]
    ]
    assert len(found) == 1, f"{overlay}: expected one init container running `recall-worker ledger upgrade`"
    return found[0]


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity (250m, 1, 256Mi, 1G) as a number."""
    text = str(value)
    units = (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("m", 1e-3), ("k", 1e3), ("M", 1e6), ("G", 1e9))
    for suffix, factor in units:
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def jobs_queues(docs: tuple[dict[str, Any], ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The jobs queues (lanes) the rendered worker consumes (from its settings) and the ones KEDA watches."""
    [deployment] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == WORKER]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    settings: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            [config_map] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
            settings.update(config_map["data"])
    settings.update({v["name"]: v["value"] for v in container.get("env", []) if "value" in v})
    prefix = settings.get("RECALL_QUEUE_PREFIX", Settings.model_fields["queue_prefix"].default)
    [scaled] = [d for d in docs if d["kind"] == "ScaledObject" and d["metadata"]["name"] == WORKER]
    watched = [t["metadata"]["queueName"] for t in scaled["spec"]["triggers"] if t["type"] == "rabbitmq"]
    consumed = Topology(QueueNames(prefix), embedded=False).lanes()
    return tuple(sorted(consumed)), tuple(sorted(watched))


def container_port(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"container {container['name']} has no port named {name}"
    return int(ports[name])


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    data.update(secret.get("stringData", {}))
    return data


def resolved_env(overlay: str, container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env (which wins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(overlay, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(secret_data(one(overlay, "Secret", source["secretRef"]["name"])))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret_data(one(overlay, "Secret", ref["name"]))[ref["key"]]
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = one(overlay, "ConfigMap", ref["name"])["data"][ref["key"]]
    return env


def mount_for(container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mount holding ``path`` (the longest mount path that contains it)."""
    holding = [
        m
        for m in container.get("volumeMounts", [])
        if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")
    ]
    assert holding, f"nothing is mounted at {path}"
    return max(holding, key=lambda m: len(m["mountPath"]))


def volume(overlay: str, name: str, deployment: str = WORKER) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = pod_spec(overlay, deployment)["volumes"]
    found = [v for v in volumes if v["name"] == name]
    assert len(found) == 1, f"{deployment}: expected one volume {name}"
    return found[0]


def assert_valid(doc: dict[str, Any], where: str) -> None:
    """``doc`` against its custom resource schema, or else against the Kubernetes schemas (every version)."""
    where = f"{where}: {doc['kind']}/{doc['metadata']['name']}"
    if doc["kind"] in SCHEMAS:
        try:
            jsonschema.Draft202012Validator(SCHEMAS[doc["kind"]]).validate(doc)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.absolute_path)}")
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} (Kubernetes {version}): {exc.message} at {list(exc.path)}")


# What the base renders for the worker and the intake; the overlays add the Namespace and the Secrets.
BASE_KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "HorizontalPodAutoscaler",
    "ScaledObject",
    "TriggerAuthentication",
    "ServiceMonitor",
    "PrometheusRule",
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(overlay: str) -> None:
    kinds = {d["kind"] for d in rendered(overlay)}
    assert {"Namespace", "Secret", *BASE_KINDS} <= kinds
    for doc in rendered(overlay):
        assert_valid(doc, overlay)


def test_the_base_renders_and_every_object_validates_against_its_schema() -> None:
    docs = build(BASE)
    assert {d["kind"] for d in docs} == BASE_KINDS, "the base holds no Namespace, Secret or Ingress"
    for doc in docs:
        assert_valid(doc, "base")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"):
        assert (kind, INTAKE) in names, f"the base deploys the intake's {kind}"


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_the_custom_resource_schemas_are_valid_and_reject_a_broken_object(kind: str) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMAS[kind])
    examples = of_kind("example", kind)
    assert examples, f"the example overlay renders no {kind}"
    validator = jsonschema.Draft202012Validator(SCHEMAS[kind])
    for good in examples:
        assert validator.is_valid(good)
        assert not validator.is_valid({**good, "spec": {}}), "an empty spec must fail"
        assert not validator.is_valid({**good, "apiVersion": good["apiVersion"] + "beta1"})
        assert not validator.is_valid({**good, "metadata": {"name": "Not_A_Name"}})


def test_the_service_monitor_schema_rejects_misspelt_or_misplaced_fields() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMAS["ServiceMonitor"])
    for good in of_kind("example", "ServiceMonitor"):
        spec = good["spec"]
        [endpoint] = spec["endpoints"]
        assert not validator.is_valid({**good, "spec": {**spec, "endpoint": spec["endpoints"]}})
        assert not validator.is_valid(
            {**good, "spec": {**spec, "endpoints": [{**endpoint, "intervall": "30s"}]}}
        )
        assert not validator.is_valid({**good, "spec": {**spec, "endpoints": [{**endpoint, "port": 9104}]}})
        assert not validator.is_valid({**good, "spec": {**spec, "selector": {}}}), "an empty selector"


def test_the_scaled_objects_hpa_behavior_is_valid_kubernetes() -> None:
    for overlay in OVERLAYS:
        scaled = one(overlay, "ScaledObject", WORKER)
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": WORKER},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKER},
                "minReplicas": scaled["spec"]["minReplicaCount"],
                "maxReplicas": scaled["spec"]["maxReplicaCount"],
                "behavior": behavior,
            },
        }
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(hpa, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_resources_and_a_grace_period_longer_than_the_shutdown_budget(overlay: str) -> None:
    spec = pod_spec(overlay)
    container = worker_container(overlay)
    env = resolved_env(overlay, container)
    port = container_port(container, "metrics")
    assert int(env.get("RECALL_HTTP_PORT", "9102")) == port, "the probes must hit the port the worker serves"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path
        assert http_get["port"] in ("metrics", port)
        assert http_get.get("scheme", "HTTP") == "HTTP"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{kind} for cpu and memory"
    budget = float(env.get("RECALL_SHUTDOWN_BUDGET_S", Settings.model_fields["shutdown_budget_s"].default))
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > budget + 5, f"grace {grace}s must exceed the shutdown budget {budget}s with time to exit"
    assert "lifecycle" not in container, "a preStop hook would eat into the grace period"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_init_container_migrates_the_ledger_before_the_worker_starts(overlay: str) -> None:
    worker = worker_container(overlay)
    migrate = migration_container(overlay)
    assert "command" not in migrate and migrate["args"] == ["ledger", "upgrade"], "the image's ENTRYPOINT"
    assert migrate.get("restartPolicy") != "Always", "a sidecar would run beside the worker, not before it"
    assert migrate["image"] == worker["image"], "the migrations ship with the worker that needs them"
    assert migrate.get("imagePullPolicy") == worker.get("imagePullPolicy")
    assert migrate["securityContext"] == worker["securityContext"]
    assert migrate["envFrom"] == worker["envFrom"], "the worker's settings"
    [database] = [v for v in migrate["env"] if v["name"] == "RECALL_DATABASE_URL"]
    assert [database] == [v for v in worker["env"] if v["name"] == "RECALL_DATABASE_URL"], (
        "the migrations must reach the ledger the worker uses, from the same Secret"
    )
    env = resolved_env(overlay, migrate)
    worker_env = resolved_env(overlay, worker)
    assert env["RECALL_DATABASE_URL"] == worker_env["RECALL_DATABASE_URL"]
    # It needs the ledger and nothing else: neither the app key nor the broker.
    assert "RECALL_BROKER_URL" not in env
    key_volume = mount_for(worker, worker_env["RECALL_TIM_KEY_FILE"])["name"]
    assert key_volume not in {m["name"] for m in migrate.get("volumeMounts", [])}
    # The pod's scheduling request is the larger of an init container's and the containers' sum: a modest
    # migration step leaves it at the worker's.
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert quantity(migrate["resources"][kind][resource]) <= quantity(
                worker["resources"][kind][resource]
            ), f"the init container's {resource} {kind} exceed the worker's"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_standard(overlay: str) -> None:
    [namespace] = of_kind(overlay, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in rendered(overlay) if d["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]
    }
    for deployment in of_kind(overlay, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = pod_spec(overlay, name)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 1000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False, "Service links would inject variables into the settings"
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key)
        for vol in pod.get("volumes", []):
            assert set(vol) - {"name"} <= RESTRICTED_VOLUMES, f"{name}: volume {vol['name']}"
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert "ALL" in context["capabilities"]["drop"] and not context["capabilities"].get("add")
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert not context.get("privileged")
            tmp = mount_for(container, "/tmp")
            assert tmp["mountPath"] == "/tmp" and "emptyDir" in volume(overlay, tmp["name"], name), (
                f"{name}: a writable /tmp on the read-only root"
            )
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_key_is_a_secret_file_readable_by_the_worker_and_never_an_environment_value(overlay: str) -> None:
    container = worker_container(overlay)
    pod = pod_spec(overlay)
    env = resolved_env(overlay, container)
    assert "RECALL_TIM_KEY" not in env, "the key is never a plain environment value"
    for config_map in of_kind(overlay, "ConfigMap"):
        assert "RECALL_TIM_KEY" not in config_map["data"]
        for key, value in config_map["data"].items():
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"a password in ConfigMap data {key}"
    for var in container["env"]:
        assert "value" not in var or not re.search(r"://[^/@\s]*:[^/@\s]*@", var["value"]), var["name"]
    key_file = env["RECALL_TIM_KEY_FILE"]
    mount = mount_for(container, key_file)
    assert mount.get("readOnly") is True and "subPath" not in mount
    secret_volume = volume(overlay, mount["name"])["secret"]
    relative = key_file.removeprefix(mount["mountPath"] + "/")
    [item] = [i for i in secret_volume["items"] if i["path"] == relative]
    secret = one(overlay, "Secret", secret_volume["secretName"])
    assert secret_data(secret)[item["key"]].strip(), "the key file must not be empty"
    mode = item.get("mode", secret_volume.get("defaultMode", 0o644))
    assert not mode & 0o007, "the key file must not be world-readable"
    # Secret files belong to root and to the pod's fsGroup, which every container process is a member of:
    # the worker reads the key through that group.
    assert mode & 0o040 and pod["securityContext"].get("fsGroup") is not None, (
        "the worker's user could not read the key file"
    )
    for name in ("RECALL_BROKER_URL", "RECALL_DATABASE_URL"):
        [var] = [v for v in container["env"] if v["name"] == name]
        assert var["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_rules_are_a_config_map_directory_so_edits_hot_reload(overlay: str) -> None:
    container = worker_container(overlay)
    rules_path = resolved_env(overlay, container)["RECALL_RULES_PATH"]
    mount = mount_for(container, rules_path)
    assert "subPath" not in mount, "a subPath mount is never updated: the rules could not hot-reload"
    config_map_name = volume(overlay, mount["name"])["configMap"]["name"]
    assert config_map_name == "recall-worker-rules", "no hash suffix: an edit must reload, not roll the pods"
    config_map = one(overlay, "ConfigMap", config_map_name)
    relative = rules_path.removeprefix(mount["mountPath"] + "/")
    assert config_map["data"][relative] == (DEPLOY / "k8s" / "base" / "rules.yaml").read_text()
    assert (DEPLOY / "k8s" / "base" / "rules.yaml").read_text() == (
        ROOT / "rules" / "examples" / "default.yaml"
    ).read_text(), "deploy/k8s/base/rules.yaml is a copy of rules/examples/default.yaml"
    # list files the rules name sit beside them in the same directory
    hashes = (ROOT / "rules" / "examples" / "known-spam-images.txt").read_text()
    assert config_map["data"]["known-spam-images.txt"] == hashes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_in_the_manifests_is_one_the_worker_knows(overlay: str) -> None:
    known = {"RECALL_" + name.upper() for name in Settings.model_fields}
    for deployment in of_kind(overlay, "Deployment"):
        pod = pod_spec(overlay, deployment["metadata"]["name"])
        for container in pod["containers"] + pod.get("initContainers", []):
            for name in resolved_env(overlay, container):
                assert name in known, f"{name} is not a setting: the worker would silently ignore it"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_the_worker_on_its_jobs_queue(overlay: str) -> None:
    deployment = one(overlay, "Deployment", WORKER)
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count; a fixed one would fight it"
    scaled = one(overlay, "ScaledObject", WORKER)["spec"]
    target = scaled["scaleTargetRef"]
    assert (target.get("kind", "Deployment"), target["name"]) == ("Deployment", WORKER)
    assert 1 <= scaled["minReplicaCount"] <= scaled["fallback"]["replicas"] <= scaled["maxReplicaCount"]
    env = resolved_env(overlay, worker_container(overlay))
    assert {trigger["type"] for trigger in scaled["triggers"]} == {"rabbitmq"}
    consumed, watched = jobs_queues(rendered(overlay))
    prefix = env.get("RECALL_QUEUE_PREFIX", Settings.model_fields["queue_prefix"].default)
    assert consumed == tuple(sorted((QueueNames(prefix).jobs, QueueNames(prefix).urgent)))
    assert watched == consumed, "KEDA must watch the queues (both lanes) the worker consumes"
    for trigger in scaled["triggers"]:
        assert trigger["metadata"]["mode"] == "QueueLength" and float(trigger["metadata"]["value"]) > 0
        assert "host" not in trigger["metadata"], "the broker URL (with its password) belongs in a Secret"
        auth = one(overlay, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        [host] = [ref for ref in auth["spec"]["secretTargetRef"] if ref["parameter"] == "host"]
        secret = secret_data(one(overlay, "Secret", host["name"]))
        url = secret[host["key"]]
        assert url == env["RECALL_BROKER_URL"], "KEDA must watch the broker the worker consumes"
        assert url.startswith(("amqp://", "amqps://"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_queue_prefix_set_once_in_a_copy_of_the_overlay_renames_the_queue_keda_watches(
    overlay: str, tmp_path: Path
) -> None:
    """What the README says to do: copy an overlay, then change its settings (here the queue prefix)."""
    tree = tmp_path / "k8s"
    shutil.copytree(DEPLOY / "k8s", tree)
    copy = tree / "overlays" / overlay
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    merges = [g for g in kustomization["configMapGenerator"] if g["name"] == "recall-worker-settings"]
    assert [g.get("behavior") for g in merges] == ["merge"], "the overlay merges its settings into the base's"
    literals = [lit for lit in merges[0]["literals"] if not lit.startswith("RECALL_QUEUE_PREFIX=")]
    merges[0]["literals"] = [*literals, "RECALL_QUEUE_PREFIX=moderation-eu"]
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    # (kustomize before 5.1 ran components before the overlay's own generators: the queue would keep the
    # base's prefix.)
    lanes = ("moderation-eu.jobs", "moderation-eu.jobs.urgent")
    assert jobs_queues(build(copy)) == (lanes, lanes)


@pytest.mark.parametrize("prefix", ["moderation-eu", "moderation.eu"])
def test_a_new_overlay_sets_the_queue_prefix_once_for_the_worker_and_keda(
    prefix: str, tmp_path: Path
) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY / "k8s" / "base", overlay)],
        "components": [os.path.relpath(QUEUE_NAME_COMPONENT, overlay)],
        "configMapGenerator": [
            {
                "name": "recall-worker-settings",
                "behavior": "merge",
                "literals": [f"RECALL_QUEUE_PREFIX={prefix}"],
            }
        ],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    lanes = (f"{prefix}.jobs", f"{prefix}.jobs.urgent")
    assert jobs_queues(build(overlay)) == (lanes, lanes)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budget_service_and_monitoring_select_the_worker(overlay: str) -> None:
    labels = pod_labels(overlay)
    pdb = one(overlay, "PodDisruptionBudget", WORKER)["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb.get("maxUnavailable") == 1 or "minAvailable" in pdb
    selector = one(overlay, "Deployment", WORKER)["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    service = one(overlay, "Service", "recall-worker-metrics")
    assert service["spec"]["selector"].items() <= labels.items()
    [service_port] = service["spec"]["ports"]
    assert service_port["name"] == "metrics" and service_port["targetPort"] in ("metrics", 9102)
    monitor = one(overlay, "ServiceMonitor", WORKER)["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [monitored] = [
        s
        for s in of_kind(overlay, "Service")
        if monitor["selector"]["matchLabels"].items() <= s["metadata"].get("labels", {}).items()
    ]
    assert monitored is service, "the ServiceMonitor must pick the worker's Service only"
    assert [e["port"] for e in monitor["endpoints"]] == ["metrics"]
    assert monitor["endpoints"][0].get("path", "/metrics") == "/metrics"
    annotations = one(overlay, "Deployment", WORKER)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == container_port(worker_container(overlay), "metrics")


def assert_egress_only_to_dns_broker_redis_ledger_and_https(overlay: str, policy: dict[str, Any]) -> None:
    """The egress both pods need: DNS, RabbitMQ, Redis, PostgreSQL, public HTTPS (and staging's emulator)."""
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    rules = {(p["port"], p["protocol"]): rule for rule in policy["egress"] for p in rule["ports"]}
    allowed = {
        (53, "UDP"),
        (53, "TCP"),
        (5672, "TCP"),
        (5671, "TCP"),
        (6379, "TCP"),
        (5432, "TCP"),
        (443, "TCP"),
    }
    if overlay == "staging":
        allowed.add((8090, "TCP"))
    assert set(rules) == allowed
    assert all(rule.get("to") for rule in policy["egress"]), "every egress rule names its peers"
    [dns] = rules[(53, "UDP")]["to"]
    assert dns["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert dns["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    for port, service in ((5672, "rabbitmq"), (6379, "redis"), (5432, "postgresql")):
        [peer] = rules[(port, "TCP")]["to"]
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": service}
    [internet] = rules[(443, "TCP")]["to"]
    assert internet["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert set(internet["ipBlock"]["except"]) >= PRIVATE_RANGES, "HTTPS only to public addresses"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policy_allows_only_dns_broker_redis_ledger_and_https(overlay: str) -> None:
    policy = one(overlay, "NetworkPolicy", WORKER)["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels(overlay).items()
    assert_egress_only_to_dns_broker_redis_ledger_and_https(overlay, policy)
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [
        {"port": container_port(worker_container(overlay), "metrics"), "protocol": "TCP"}
    ]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_the_example_secret_holds_placeholders_only() -> None:
    secrets = {s["metadata"]["name"]: secret_data(s) for s in of_kind("example", "Secret")}
    assert {name: set(values) for name, values in secrets.items()} == {
        "recall-worker-secrets": {"tim-key", "broker-url", "database-url"},
        "recall-intake-secrets": {"intake-keys", "webhook-secret", "tim-callback-token"},
    }
    for name, values in secrets.items():
        for key, value in values.items():
            assert "REPLACE_ME" in value, f"{name} {key}: the example must never carry a real credential"


def test_the_example_overlay_sets_region_image_and_replicas() -> None:
    env = resolved_env("example", worker_container("example"))
    assert env["RECALL_TIM_REGION"] in REGION_DOMAINS
    assert "RECALL_TIM_BASE_URL" not in env, "production talks to the region's domain"
    image = worker_container("example")["image"]
    assert re.fullmatch(r"[\w.-]+(:\d+)?/[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), image
    assert one("example", "ScaledObject", WORKER)["spec"]["minReplicaCount"] >= 2


def test_staging_runs_the_emulator_and_points_the_worker_at_it() -> None:
    worker_env = resolved_env("staging", worker_container("staging"))
    service = one("staging", "Service", EMULATOR)
    [service_port] = service["spec"]["ports"]
    assert worker_env["RECALL_TIM_BASE_URL"] == f"http://{EMULATOR}:{service_port['port']}"
    emulator = one("staging", "Deployment", EMULATOR)
    assert service["spec"]["selector"].items() <= pod_labels("staging", EMULATOR).items()
    [container] = pod_spec("staging", EMULATOR)["containers"]
    args = container["args"]
    assert args[0] == "emulator"
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert options["--host"] == "0.0.0.0", "the emulator must listen on the pod's address"  # noqa: S104
    assert int(options["--port"]) == container_port(container, service_port["targetPort"])
    assert options["--sdkappid"] == worker_env["RECALL_TIM_SDKAPPID"]
    assert options["--admin"] == worker_env["RECALL_TIM_ADMIN"]
    assert container["image"] == worker_container("staging")["image"], "the emulator ships with the worker"
    emulator_env = resolved_env("staging", container)
    worker_key = Path(worker_env["RECALL_TIM_KEY_FILE"]).name
    key_volume = volume(
        "staging", mount_for(worker_container("staging"), worker_env["RECALL_TIM_KEY_FILE"])["name"]
    )
    [item] = [i for i in key_volume["secret"]["items"] if i["path"] == worker_key]
    worker_secret = secret_data(one("staging", "Secret", key_volume["secret"]["secretName"]))
    assert emulator_env["RECALL_TIM_KEY"] == worker_secret[item["key"]], "both sides must share the app key"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/_emulator/health"
    assert emulator["spec"]["replicas"] == 1, "the emulator's state is in memory: one replica"
    policy = one("staging", "NetworkPolicy", WORKER)["spec"]
    assert any(
        rule["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": EMULATOR}}}]
        and rule["ports"] == [{"port": int(options["--port"]), "protocol": "TCP"}]
        for rule in policy["egress"]
    ), "the worker's network policy must let it reach the emulator"


# the report intake ----------------------------------------------------------------------------------------


def intake_container(overlay: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(overlay, INTAKE)["containers"]
    assert len(containers) == 1, "the intake's pod runs the intake only"
    return containers[0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions; a Service's plain map) matches ``labels``."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def pod_selectors(overlay: str) -> list[tuple[str, dict[str, Any]]]:
    """Every selector of pods in the overlay, as (what it belongs to, the selector)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for doc in rendered(overlay):
        kind, name, spec = doc["kind"], doc["metadata"]["name"], doc.get("spec", {})
        if kind == "Deployment":
            found.append((f"Deployment/{name}", spec["selector"]))
            for spread in spec["template"]["spec"].get("topologySpreadConstraints", []):
                found.append((f"Deployment/{name} topology spread", spread["labelSelector"]))
        elif kind in ("Service", "PodDisruptionBudget"):
            found.append((f"{kind}/{name}", spec["selector"]))
        elif kind == "NetworkPolicy":
            found.append((f"{kind}/{name}", spec["podSelector"]))
    return found


def owner(what: str) -> str:
    """The Deployment a selector belongs to, by the object's name (recall-worker-metrics: the worker's)."""
    name = what.split(maxsplit=1)[0].split("/")[1]
    return {"recall-worker-metrics": WORKER}.get(name, name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_and_the_intake_never_select_each_others_pods(overlay: str) -> None:
    pods = {
        d["metadata"]["name"]: pod_labels(overlay, d["metadata"]["name"])
        for d in of_kind(overlay, "Deployment")
    }
    assert {WORKER, INTAKE} <= set(pods)
    assert pod_labels(overlay, WORKER)["app.kubernetes.io/component"] == "worker"
    assert pod_labels(overlay, INTAKE)["app.kubernetes.io/component"] == "intake"
    selectors = pod_selectors(overlay)
    for deployment in (WORKER, INTAKE):
        kinds = {what.split("/")[0] for what, _ in selectors if owner(what) == deployment}
        assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds, deployment
    for what, selector in selectors:
        selected = {name for name, labels in pods.items() if selects(selector, labels)}
        assert selected == {owner(what)}, f"{overlay}: {what} selects the pods of {sorted(selected)}"
    # Autoscalers and monitors name their targets: KEDA the worker, the HPA the intake, one each.
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(overlay, "ScaledObject")}
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(overlay, "HorizontalPodAutoscaler")}
    assert scaled == {WORKER} and hpas == {INTAKE}, "two autoscalers on one Deployment would fight"
    services = of_kind(overlay, "Service")
    for monitor in of_kind(overlay, "ServiceMonitor"):
        picked = [
            s["metadata"]["name"]
            for s in services
            if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        wanted = {WORKER: "recall-worker-metrics", INTAKE: INTAKE}[monitor["metadata"]["name"]]
        assert picked == [wanted], f"ServiceMonitor/{monitor['metadata']['name']} picks {picked}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_intake_runs_the_intake_command_with_probes_on_its_port(overlay: str) -> None:
    container = intake_container(overlay)
    assert "command" not in container and container["args"] == ["intake"], "the image's ENTRYPOINT, intake"
    assert container["image"] == worker_container(overlay)["image"], "the intake ships with the worker"
    env = resolved_env(overlay, container)
    port = container_port(container, "http")
    assert port == INTAKE_PORT
    assert int(env.get("RECALL_INTAKE_PORT", Settings.model_fields["intake_port"].default)) == port, (
        "the probes must hit the port the intake serves"
    )
    every_address = Settings.model_fields["intake_host"].default
    assert env.get("RECALL_INTAKE_HOST", every_address) == every_address, "listen on the pod's address"
    assert [p["containerPort"] for p in container["ports"]] == [port], "API, probes and metrics: one port"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path, f"{probe} on {path}"
        assert http_get["port"] in ("http", port), f"{probe} on port {port}"
        assert http_get.get("scheme", "HTTP") == "HTTP"
    assert ("startupProbe" in container) == ("startupProbe" in worker_container(overlay)), (
        "a startup probe where the worker has one"
    )
    # A readiness failure must take the pod out of the Service quickly; liveness must not restart a pod
    # that only lost its database for a moment (readiness covers that).
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 15
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    annotations = one(overlay, "Deployment", INTAKE)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_intake_is_non_root_read_only_with_resources_and_a_grace_period(overlay: str) -> None:
    pod = pod_spec(overlay, INTAKE)
    container = intake_container(overlay)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 1000
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["automountServiceAccountToken"] is False
    account = one(overlay, "ServiceAccount", pod["serviceAccountName"])
    assert account.get("automountServiceAccountToken") is False
    assert pod["enableServiceLinks"] is False, (
        "the Service recall-intake would inject RECALL_INTAKE_PORT=tcp://..."
    )
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), f"{kind} for cpu and memory"
        assert quantity(resources[kind]["cpu"]) > 0
    for resource in ("cpu", "memory"):
        assert quantity(resources["requests"][resource]) <= quantity(resources["limits"][resource])
    # On SIGTERM the intake finishes its requests within about 10 s; a preStop sleep comes first, so that the
    # endpoints and the ingress controller stop sending before the port closes.
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    assert set(pre_stop) <= {"sleep"}, "a preStop hook that needs nothing from the image"
    delay = pre_stop.get("sleep", {}).get("seconds", 0)
    grace = pod["terminationGracePeriodSeconds"]
    assert delay + INTAKE_STOP_S + 5 <= grace <= 60, f"grace {grace}s: preStop {delay}s + the intake's stop"
    strategy = one(overlay, "Deployment", INTAKE)["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0, "a rollout never lowers the serving pods"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_intakes_pods_migrate_the_ledger_as_the_workers_do(overlay: str) -> None:
    intake = pod_spec(overlay, INTAKE)
    assert intake.get("initContainers") == pod_spec(overlay).get("initContainers"), (
        "the same ledger-upgrade step as the worker's pods, whichever Deployment rolls first"
    )
    [database] = [v for v in intake_container(overlay)["env"] if v["name"] == "RECALL_DATABASE_URL"]
    assert [database] == [v for v in worker_container(overlay)["env"] if v["name"] == "RECALL_DATABASE_URL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_intakes_secrets_are_files_or_secret_references_never_values(overlay: str) -> None:
    pod = pod_spec(overlay, INTAKE)
    container = intake_container(overlay)
    env = resolved_env(overlay, container)
    worker = worker_container(overlay)
    worker_env = resolved_env(overlay, worker)
    for name in ("RECALL_TIM_KEY", "RECALL_INTAKE_KEYS"):
        assert name not in env, f"{name} is a mounted file, never an environment value"
    for var in container["env"]:
        assert "value" not in var or not re.search(r"://[^/@\s]*:[^/@\s]*@", var["value"]), var["name"]
    # The Chat key for the notices: the worker's Secret file, mounted the same way.
    assert env["RECALL_TIM_KEY_FILE"] == worker_env["RECALL_TIM_KEY_FILE"]
    tim_mount = mount_for(container, env["RECALL_TIM_KEY_FILE"])
    worker_mount = mount_for(worker, worker_env["RECALL_TIM_KEY_FILE"])
    assert tim_mount == worker_mount
    assert volume(overlay, tim_mount["name"], INTAKE) == volume(overlay, worker_mount["name"])
    # The report-signing keys: a file of their own Secret, as readable as the app key and no more.
    keys_file = env["RECALL_INTAKE_KEYS_FILE"]
    mount = mount_for(container, keys_file)
    assert mount.get("readOnly") is True and "subPath" not in mount
    secret_volume = volume(overlay, mount["name"], INTAKE)["secret"]
    [item] = [
        i for i in secret_volume["items"] if i["path"] == keys_file.removeprefix(mount["mountPath"] + "/")
    ]
    mode = item.get("mode", secret_volume.get("defaultMode", 0o644))
    assert not mode & 0o007 and mode & 0o040 and pod["securityContext"].get("fsGroup") is not None
    intake_secret = one(overlay, "Secret", secret_volume["secretName"])
    assert secret_data(intake_secret)[item["key"]].strip(), "the keys file must not be empty"
    # The webhook key and Tencent's callback token: from the intake's Secret, by reference.
    for name in ("RECALL_INTAKE_WEBHOOK_SECRET", "RECALL_TIM_CALLBACK_TOKEN"):
        [var] = [v for v in container["env"] if v["name"] == name]
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == intake_secret["metadata"]["name"] and not ref.get("optional"), name
        assert env[name], f"{name} must not be empty"
    # The broker and the ledger: the worker's, from the same Secret (the jobs reach the worker's queue).
    for name in ("RECALL_BROKER_URL", "RECALL_DATABASE_URL"):
        [var] = [v for v in container["env"] if v["name"] == name]
        assert [var] == [v for v in worker["env"] if v["name"] == name], name
    for name in ("RECALL_QUEUE_PREFIX", "RECALL_TIM_REGION", "RECALL_TIM_SDKAPPID", "RECALL_TIM_ADMIN"):
        assert env.get(name) == worker_env.get(name), f"{name}: the intake and the worker must agree"
    if "RECALL_TIM_BASE_URL" in worker_env:
        assert env["RECALL_TIM_BASE_URL"] == worker_env["RECALL_TIM_BASE_URL"]
    # The worker's pods see none of the intake's secrets.
    for name in ("RECALL_INTAKE_KEYS_FILE", "RECALL_INTAKE_WEBHOOK_SECRET", "RECALL_TIM_CALLBACK_TOKEN"):
        assert name not in worker_env, f"the worker does not need {name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_intake_autoscales_on_cpu_from_two_replicas(overlay: str) -> None:
    deployment = one(overlay, "Deployment", INTAKE)
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count; a fixed one would fight it"
    hpa = one(overlay, "HorizontalPodAutoscaler", INTAKE)
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    target = spec["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", INTAKE)
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
    [metric] = spec["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 50 <= metric["resource"]["target"]["averageUtilization"] <= 90
    # Utilization is measured against the CPU requests: every container needs one (init containers aside).
    for container in pod_spec(overlay, INTAKE)["containers"]:
        assert quantity(container["resources"]["requests"]["cpu"]) > 0, f"{container['name']}: CPU request"
    pdb = one(overlay, "PodDisruptionBudget", INTAKE)["spec"]
    assert selects(pdb["selector"], pod_labels(overlay, INTAKE))
    assert 1 <= pdb["minAvailable"] < spec["minReplicas"], "a drain keeps one pod and can still evict one"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_intakes_service_and_monitor_reach_its_port(overlay: str) -> None:
    container = intake_container(overlay)
    service = one(overlay, "Service", INTAKE)["spec"]
    assert service.get("type", "ClusterIP") == "ClusterIP"
    assert selects(service["selector"], pod_labels(overlay, INTAKE))
    [port] = service["ports"]
    assert (port["name"], port["port"], port.get("protocol", "TCP")) == ("http", 80, "TCP")
    assert port["targetPort"] in ("http", INTAKE_PORT)
    assert container_port(container, "http") == INTAKE_PORT
    monitor = one(overlay, "ServiceMonitor", INTAKE)["spec"]
    [endpoint] = monitor["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint.get("path", "/metrics") == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_intakes_network_policy_admits_only_its_port(overlay: str) -> None:
    policy = one(overlay, "NetworkPolicy", INTAKE)["spec"]
    assert selects(policy["podSelector"], pod_labels(overlay, INTAKE))
    assert not selects(policy["podSelector"], pod_labels(overlay, WORKER))
    assert_egress_only_to_dns_broker_redis_ledger_and_https(overlay, policy)
    assert policy["ingress"], "the API must be reachable"
    for rule in policy["ingress"]:
        assert rule["ports"] == [{"port": INTAKE_PORT, "protocol": "TCP"}], (
            "ingress to the intake's port only"
        )
        assert rule.get("from"), "every ingress rule names its sources"
        for peer in rule["from"]:
            assert "ipBlock" not in peer, "from pods and namespaces, not from address ranges"
            assert peer.get("namespaceSelector") != {}, "not from every namespace"
    sources = [peer for rule in policy["ingress"] for peer in rule["from"]]
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in sources
        if "namespaceSelector" in peer and "podSelector" not in peer
    }
    assert {"monitoring", "ingress-nginx"} <= namespaces, "Prometheus and the ingress controller"


def routes(path: str, path_type: str, request: str) -> bool:
    """Whether an Ingress path (Prefix: whole path elements; Exact) takes a request path."""
    if path_type == "Exact":
        return request == path
    prefix = path.rstrip("/")
    return request == prefix or request.startswith(prefix + "/")


def test_the_example_ingress_exposes_only_the_intakes_api_over_tls() -> None:
    [ingress] = of_kind("example", "Ingress")
    spec = ingress["spec"]
    assert spec.get("ingressClassName"), "name the ingress class"
    assert "defaultBackend" not in spec, "nothing but /v1 is routed"
    hosts = [rule["host"] for rule in spec["rules"]]
    assert hosts == ["reports.example.com"], "a placeholder host"
    assert spec["tls"], "TLS"
    covered = {host for tls in spec["tls"] for host in tls["hosts"]}
    assert set(hosts) <= covered and all(tls.get("secretName") for tls in spec["tls"]), "TLS for every host"
    service = one("example", "Service", INTAKE)
    [service_port] = service["spec"]["ports"]
    for rule in spec["rules"]:
        for path in rule["http"]["paths"]:
            assert (path["path"], path["pathType"]) == ("/v1", "Prefix"), "the API only"
            backend = path["backend"]["service"]
            assert backend["name"] == INTAKE
            assert backend["port"] in ({"name": service_port["name"]}, {"number": service_port["port"]})
            for request in ("/v1/reports", "/v1/reports/r-1", "/v1/callbacks/tencent"):
                assert routes(path["path"], path["pathType"], request), request
            for request in (*INTERNAL_PATHS, "/", "/v10"):
                assert not routes(path["path"], path["pathType"], request), f"{request} must stay internal"
    assert not of_kind("staging", "Ingress"), "staging reaches the intake by port-forward"


def alert_rules(overlay: str = "example") -> list[dict[str, Any]]:
    groups = one(overlay, "PrometheusRule", WORKER)["spec"]["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def seconds(duration: str) -> float:
    """A Prometheus duration (90s, 2m, 1h30m) in seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * factor[u] for n, u in parts)


def test_the_alerts_use_metrics_and_label_values_that_exist() -> None:
    exported = {m.name for m in Metrics().registry.collect()}
    counters = {f"{m.name}_total" for m in Metrics().registry.collect() if m.type == "counter"}
    histograms = {f"{m.name}_{s}" for m in Metrics().registry.collect() for s in ("bucket", "sum", "count")}
    known = exported | counters | histograms | EXTERNAL_METRICS
    settings = {"RECALL_" + name.upper() for name in Settings.model_fields}
    alerts = alert_rules()
    assert len({a["alert"] for a in alerts}) == len(alerts), "alert names are unique"
    assert len(alerts) >= 7
    statuses = set(typing.get_args(Status))
    for alert in alerts:
        expr = alert["expr"]
        for opening, closing in ("()", "{}", "[]"):
            assert expr.count(opening) == expr.count(closing), (
                f"{alert['alert']}: unbalanced {opening}{closing}"
            )
        metrics = set(re.findall(r"\b((?:recall|kube|keda)_[a-z_]+)\b", expr))
        assert metrics, alert["alert"]
        assert metrics <= known, f"{alert['alert']}: unknown metrics {metrics - known}"
        for status in re.findall(r'status="(\w+)"', expr):
            assert status in statuses, f"{alert['alert']}: no job ends with status {status}"
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"]
        named = set(re.findall(r"\bRECALL_[A-Z0-9_]+", " ".join(alert["annotations"].values())))
        assert named <= settings, f"{alert['alert']}: no such setting {named - settings}"
    assert set(DOCUMENTED_METRICS) <= known


def test_an_alert_fires_while_the_chat_api_refuses_the_credentials() -> None:
    alerts = {a["alert"]: a for a in alert_rules()}
    assert "RecallUserSigRejected" not in alerts, "RecallCredentialsRejected replaces it"
    alert = alerts["RecallCredentialsRejected"]
    # The gauge is 0 on a pod whose last credentials check was refused: any such pod fires.
    expr = " ".join(alert["expr"].split())
    assert re.search(r"recall_credentials_ok(\{[^}]*\})?\)? (== 0|< 1)\b", expr), f"{expr}: where it is 0"
    assert alert["labels"]["severity"] == "critical"
    assert 60 <= seconds(alert.get("for", "0s")) <= 300, "long enough to skip a blip, short for an outage"
    text = " ".join(alert["annotations"].values())
    for setting in (
        "tim-key",
        "RECALL_TIM_KEY",
        "RECALL_TIM_KEY_FILE",
        "RECALL_TIM_SDKAPPID",
        "RECALL_TIM_ADMIN",
    ):
        assert re.search(rf"\b{setting}\b", text), f"name {setting} among what to check"
    assert re.search(r"requeued, not dead-lettered", text), "say what becomes of the jobs meanwhile"


def test_the_readme_documents_every_alert() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"^\| alert \| means \| do \|\n\|[-|]+\|\n((?:\|.*\n)+)", readme, re.MULTILINE)
    assert table, "the README's alerts table (| alert | means | do |)"
    documented = re.findall(r"^\| `(\w+)` \|", table.group(1), re.MULTILINE)
    assert sorted(documented) == sorted(a["alert"] for a in alert_rules()), (
        "the README's alerts table and the PrometheusRule name the same alerts"
    )


# the process ---------------------------------------------------------------------------------------------


def materialize(overlay: str, deployment: str, container: dict[str, Any], root: Path) -> dict[str, Path]:
    """Lay the container's volumes out under ``root`` as the kubelet would; mount path -> local path."""
    where: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        local = root / mount["mountPath"].strip("/")
        local.mkdir(parents=True, exist_ok=True)
        source = volume(overlay, mount["name"], deployment)
        if "secret" in source:
            data = secret_data(one(overlay, "Secret", source["secret"]["secretName"]))
            items = source["secret"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (local / item["path"]).write_text(data[item["key"]])
        elif "configMap" in source:
            for key, value in one(overlay, "ConfigMap", source["configMap"]["name"])["data"].items():
                (local / key).write_text(value)
        where[mount["mountPath"]] = local
    return where


def process_env(overlay: str, deployment: str, container: dict[str, Any], root: Path) -> dict[str, str]:
    """The environment the container's process sees: the image's ENV, then the manifest's, with the
    mounted paths mapped under ``root``. The broker, the ledger and Redis are local stand-ins here."""
    mounts = materialize(overlay, deployment, container, root)
    image = image_env(stages()[-1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECALL_", "PYTHON"))}
    env.update({k: v for k, v in image.items() if k != "PATH"})
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for name, value in resolved_env(overlay, container).items():
        env[name] = value
        for mount_path in sorted(mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path + "/"):
                env[name] = str(mounts[mount_path]) + value.removeprefix(mount_path)
                break
    env["HOME"] = str(mounts["/tmp"])
    return env


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a loopback URL
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 15) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the process exited with {proc.returncode}:\n{log.read_text()}"
        try:
            status, body = get(url)
        except OSError:
            status, body = 0, b""
        if status == 200:
            return body
        time.sleep(0.1)
    pytest.fail(f"{url} never answered 200:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the process ignored SIGTERM for {timeout_s}s")


def entry_point() -> list[str]:
    """The image's ENTRYPOINT as installed in this environment (``pip install .``, as the image does)."""
    [name] = exec_form(stages()[-1].last("ENTRYPOINT"), "ENTRYPOINT")
    return [tool(name)]


def test_the_entry_point_answers_help_and_masks_secrets_in_config_show() -> None:
    entrypoint = entry_point()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECALL_")}
    env.update(
        {"RECALL_TIM_KEY": "k8s-secret-value", "RECALL_BROKER_URL": "amqp://recall:pw1234@rabbit:5672/"}
    )
    helped = subprocess.run([*entrypoint, "--help"], capture_output=True, text=True, check=True, timeout=30)
    assert re.search(r"^\s+run\s", helped.stdout, re.MULTILINE)
    shown = subprocess.run(
        [*entrypoint, "config", "show"], env=env, capture_output=True, text=True, check=True, timeout=30
    )
    settings = json.loads(shown.stdout)
    assert settings["tim_key"] == "***"
    assert settings["broker_url"] == "amqp://recall:***@rabbit:5672/"
    assert "k8s-secret-value" not in shown.stdout + shown.stderr
    assert "pw1234" not in shown.stdout + shown.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_deployments_settings_load_with_its_secret_and_config_map_files(
    overlay: str, tmp_path: Path
) -> None:
    container = worker_container(overlay)
    env = process_env(overlay, WORKER, container, tmp_path)
    shown = subprocess.run(
        [*entry_point(), "config", "show"], env=env, capture_output=True, text=True, check=False, timeout=30
    )
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["tim_key"] == "***", "the key was read from the mounted Secret file"
    assert Path(settings["rules_path"]).is_file()
    assert settings["shutdown_budget_s"] < pod_spec(overlay)["terminationGracePeriodSeconds"]
    assert settings["http_port"] == container_port(container, "metrics")
    assert settings["log_format"] == "json"
    assert settings["broker_url"].startswith("amqp") and settings["database_url"].startswith("postgresql")
    for key, value in secret_data(one(overlay, "Secret", "recall-worker-secrets")).items():
        secret_part = value if key == "tim-key" else re.sub(r"^.*://[^:]*:([^@]*)@.*$", r"\1", value)
        assert secret_part not in shown.stdout + shown.stderr, f"{key} leaked into config show"
    checked = subprocess.run(
        [*entry_point(), "rules", "check", settings["rules_path"]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_worker_runs_as_the_deployment_runs_it_and_stops_on_sigterm(tmp_path: Path) -> None:
    overlay = "example"
    container = worker_container(overlay)
    env = process_env(overlay, WORKER, container, tmp_path)
    workdir = Path(env["HOME"])
    # No RabbitMQ, PostgreSQL or Redis here: the embedded queue and a SQLite ledger in the /tmp volume.
    env["RECALL_BROKER_URL"] = f"sqlite:///{workdir}/queue.db"
    env["RECALL_DATABASE_URL"] = f"sqlite:///{workdir}/ledger.db"
    env.pop("RECALL_REDIS_URL", None)
    key = base64.b32encode(os.urandom(20)).decode()
    Path(env["RECALL_TIM_KEY_FILE"]).write_text(key)
    port = free_port()
    env["RECALL_HTTP_PORT"] = str(port)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*entry_point(), *container["args"]], env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ok(base + container["readinessProbe"]["httpGet"]["path"], proc, log)
        assert (
            json.loads(wait_ok(base + container["livenessProbe"]["httpGet"]["path"], proc, log))["ok"] is True
        )
        status, metrics = get(base + "/metrics")
        assert status == 200
        for name in DOCUMENTED_METRICS:
            family = re.escape(name.removesuffix("_total"))
            assert re.search(rf"^# TYPE {family}(_total)? ", metrics.decode(), re.MULTILINE), name
    finally:
        code = stop(proc, timeout_s=pod_spec(overlay)["terminationGracePeriodSeconds"])
    output = log.read_text()
    assert code == 0, f"SIGTERM must end the worker cleanly (exit 0), got {code}:\n{output}"
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "worker.stopping" in events and events[-1] == "worker.stopped", output
    assert key not in output, "the app key must never reach the logs"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_intakes_settings_load_with_its_secret_files_and_config_maps(
    overlay: str, tmp_path: Path
) -> None:
    container = intake_container(overlay)
    env = process_env(overlay, INTAKE, container, tmp_path)
    shown = subprocess.run(
        [*entry_point(), "config", "show"], env=env, capture_output=True, text=True, check=False, timeout=30
    )
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["intake_port"] == container_port(container, "http")
    assert settings["log_format"] == "json"
    # The keys file was read and parsed at load (ID:SECRET, secrets of 16 characters or more: a bad file
    # fails `config show`); shown by its path only.
    assert settings["intake_keys"] is None and settings["intake_keys_file"] == env["RECALL_INTAKE_KEYS_FILE"]
    assert parse_intake_keys(Path(env["RECALL_INTAKE_KEYS_FILE"]).read_text())
    for name in ("tim_key", "intake_webhook_secret", "tim_callback_token"):
        assert settings[name] == "***", f"{name}: set from the Secret and masked"
    assert settings["broker_url"].startswith("amqp") and settings["database_url"].startswith("postgresql")
    if overlay == "example":
        assert settings["intake_webhook_url"].startswith("https://"), "the webhooks leave by HTTPS (443)"
    for secret_name in ("recall-worker-secrets", "recall-intake-secrets"):
        for key, value in secret_data(one(overlay, "Secret", secret_name)).items():
            secret_part = re.sub(r"^.*://[^:]*:([^@]*)@.*$", r"\1", value) if "://" in value else value
            parts = secret_part.split(",")
            if key == "intake-keys":  # ID:SECRET: the ids may be shown, never the secrets
                parts = [part.partition(":")[2] for part in parts]
            for part in parts:
                assert part not in shown.stdout + shown.stderr, f"{secret_name} {key} leaked into config show"


def has_command(name: str) -> bool:
    helped = subprocess.run(
        [*entry_point(), "--help"], capture_output=True, text=True, check=True, timeout=30
    )
    return re.search(rf"^\s+{re.escape(name)}\s", helped.stdout, re.MULTILINE) is not None


def test_the_intake_runs_as_the_deployment_runs_it_and_stops_on_sigterm(tmp_path: Path) -> None:
    overlay = "example"
    container = intake_container(overlay)
    if not has_command(container["args"][0]):
        pytest.skip(f"recall-worker has no `{container['args'][0]}` command yet")
    env = process_env(overlay, INTAKE, container, tmp_path)
    workdir = Path(env["HOME"])
    # No RabbitMQ, PostgreSQL or Redis here: the embedded queue and a SQLite ledger in the /tmp volume,
    # migrated first as the pod's init container does.
    env["RECALL_BROKER_URL"] = f"sqlite:///{workdir}/queue.db"
    env["RECALL_DATABASE_URL"] = f"sqlite:///{workdir}/ledger.db"
    env.pop("RECALL_REDIS_URL", None)
    env.pop("RECALL_INTAKE_WEBHOOK_URL", None)
    [migrate] = pod_spec(overlay, INTAKE)["initContainers"]
    migrated = subprocess.run(
        [*entry_point(), *migrate["args"]],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    port = free_port()
    env["RECALL_INTAKE_PORT"] = str(port)
    env["RECALL_INTAKE_HOST"] = "127.0.0.1"
    env["RECALL_HTTP_PORT"] = str(free_port())  # in case the command also serves the worker's port
    log = tmp_path / "intake.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*entry_point(), *container["args"]], env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ok(base + container["readinessProbe"]["httpGet"]["path"], proc, log)
        wait_ok(base + container["livenessProbe"]["httpGet"]["path"], proc, log)
        assert get(base + "/metrics")[0] == 200, "the ServiceMonitor scrapes /metrics on the same port"
        assert get(base + "/openapi.json")[0] == 200
    finally:
        code = stop(proc, timeout_s=INTAKE_STOP_S + 5)
    output = log.read_text()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal it caught: -SIGTERM is a clean end.
    assert code in (0, -signal.SIGTERM), f"SIGTERM must end the intake cleanly, got {code}:\n{output}"
    for secret in (env["RECALL_INTAKE_WEBHOOK_SECRET"], env["RECALL_TIM_CALLBACK_TOKEN"]):
        assert secret not in output, "a secret reached the logs"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_init_container_migrates_a_fresh_ledger_and_then_does_nothing(
    overlay: str, tmp_path: Path
) -> None:
    container = migration_container(overlay)
    env = process_env(overlay, WORKER, container, tmp_path)
    # No PostgreSQL here: a SQLite ledger in the /tmp volume.
    ledger = Path(env["HOME"]) / "ledger.db"
    env["RECALL_DATABASE_URL"] = f"sqlite:///{ledger}"
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    for ledger_state in ("fresh", "up to date"):
        done = subprocess.run(
            [*entry_point(), *container["args"]],
            env=env,
            cwd=env["HOME"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, f"on a {ledger_state} ledger:\n{done.stdout}{done.stderr}"
        with sqlite3.connect(ledger) as db:
            assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


def test_the_emulator_runs_as_the_staging_deployment_runs_it(tmp_path: Path) -> None:
    [container] = pod_spec("staging", EMULATOR)["containers"]
    env = process_env("staging", EMULATOR, container, tmp_path)
    port = free_port()
    args = list(container["args"])
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    log = tmp_path / "emulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*entry_point(), *args], env=env, cwd=env["HOME"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        path = container["readinessProbe"]["httpGet"]["path"]
        health = json.loads(wait_ok(f"http://127.0.0.1:{port}{path}", proc, log))
        assert (str(health["sdkappid"]), health["admin"]) == (
            args[args.index("--sdkappid") + 1],
            args[args.index("--admin") + 1],
        )
    finally:
        code = stop(proc, timeout_s=30)
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert env["RECALL_TIM_KEY"] not in log.read_text()
