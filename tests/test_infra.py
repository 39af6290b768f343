"""infra/ held against the code: the image, the compose file, the Kubernetes and
KEDA manifests name real settings, functions, routes, ports and metrics."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from functions import FUNCTIONS
from sluice.runtime import Client
from sluice.runtime.ingress.app import ROUTES
from sluice.runtime.ingress.auth import ApiKey, digest
from sluice.runtime.probe import ASK_TIMEOUT_S, LIVE_PATH, READY_PATH
from sluice.runtime.registry import Registry
from sluice.runtime.settings import PLATFORM_PORT, REDIS_PARTS, VARIABLES, Settings, from_env
from sluice.streams.connection import Redis
from sluice.streams.keys import GROUP, PartitionKeys
from tests.ingress.conftest import start_api
from tests.install import install_wheel
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
# The compose services that run the image (the rest are Redis, Jaeger, ...).
IMAGE = "sluice:local"
NAMES = {fn.name for fn in FUNCTIONS}


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests(kind: str) -> list[dict[str, Any]]:
    return [d for path in sorted(K8S.glob("*.yaml")) for d in documents(path) if d["kind"] == kind]


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = documents(INFRA / "compose.yaml")[0]["services"]
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def k8s_environment() -> dict[str, str]:
    """What every Sluice pod's environment holds: the ConfigMap and the Secret."""
    (config,), (secret,) = manifests("ConfigMap"), manifests("Secret")
    return {**config["data"], **secret["stringData"]}


def containers() -> list[dict[str, Any]]:
    return [c for d in manifests("Deployment") for c in d["spec"]["template"]["spec"]["containers"]]


def functions_option(args: list[str]) -> set[str]:
    return set(args[args.index("--functions") + 1].split(","))


def test_every_file_parses_and_every_mounted_file_exists() -> None:
    for path in [*INFRA.glob("*.y*ml"), *K8S.glob("*.yaml")]:
        assert documents(path), path
    for doc in (d for path in K8S.glob("*.yaml") for d in documents(path)):
        assert {"apiVersion", "kind", "metadata"} <= set(doc)
    services = documents(INFRA / "compose.yaml")[0]["services"]
    mounted = [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])]
    files = [m for m in mounted if m.startswith("./")]
    assert files
    assert [f for f in files if not (INFRA / f).is_file()] == []


# --- the image -------------------------------------------------------------


def dockerfile() -> list[list[tuple[str, str]]]:
    """infra/Dockerfile's instructions, stage by stage: (INSTRUCTION, arguments)."""
    text = re.sub(r"\\\n\s*", " ", (INFRA / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op.upper() == "FROM":
            stages.append([])
        stages[-1].append((op.upper(), rest.strip()))
    return stages


def copies(stage: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (source, destination) of a stage's COPY from the build context."""
    found = []
    for op, rest in stage:
        words = rest.split()
        if op == "COPY" and not any(w.startswith("--from") for w in words):
            *sources, dest = [w for w in words if not w.startswith("--")]
            found += [(source, dest) for source in sources]
    return found


def instruction(stage: list[tuple[str, str]], name: str) -> str:
    (found,) = [rest for op, rest in stage if op == name]
    return found


def test_the_image_is_slim_python_run_by_a_user_with_sluice_as_its_entry_point() -> None:
    stages = dockerfile()
    assert all(stage[0][1].split()[0] == "python:3.11-slim" for stage in stages)
    final = stages[-1]
    assert instruction(final, "USER") not in ("root", "0")
    assert json.loads(instruction(final, "ENTRYPOINT")) == ["sluice"]
    health = instruction(final, "HEALTHCHECK")
    command = json.loads(health[health.index("CMD") + 3 :])
    assert command[0] == "python"
    assert ("infra/healthcheck.py", command[1]) in copies(final)
    assert instruction(final, "EXPOSE") == str(Settings().ingress_port)


def test_the_dockerignore_lets_in_what_the_image_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    sources = {source.rstrip("/") for stage in dockerfile() for source, _ in copies(stage)}
    assert sources == allowed
    assert all((ROOT / source).exists() for source in sources)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The image's install steps, outside a container: the wheel built from only
    what the build stage copies, installed in a fresh virtualenv, and the final
    stage's files laid out under a root folder. Returns (virtualenv, workdir)."""
    folder = tmp_path_factory.mktemp("image")
    build, final = dockerfile()[0], dockerfile()[-1]
    context = folder / "context"
    for source, _ in copies(build):
        place(ROOT / source, context / source)
    venv = install_wheel(context, folder)
    root = folder / "root"
    workdir = root / instruction(final, "WORKDIR").lstrip("/")
    for source, dest in copies(final):
        target = root / dest.lstrip("/") if dest.startswith("/") else workdir / dest
        place(ROOT / source, target)
    return venv, workdir


def place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy(source, target)


def in_image(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PYTHON"))}
    return {**env, "PATH": f"{venv / 'bin'}:{env['PATH']}"}


def test_the_images_entry_point_and_command_run(image: tuple[Path, Path]) -> None:
    venv, workdir = image
    final = dockerfile()[-1]
    entry, command = (json.loads(instruction(final, op)) for op in ("ENTRYPOINT", "CMD"))
    for line in ([*entry, "--help"], [*entry, *command, "--help"]):
        done = subprocess.run(
            line, cwd=workdir, env=in_image(venv), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    assert "ingress" in done.stdout or "--functions" in done.stdout


def healthcheck(image: tuple[Path, Path], pid: int, env: dict[str, str]) -> int:
    """The image's HEALTHCHECK for process `pid` (its PID 1), in environment `env`."""
    venv, workdir = image
    check = workdir.parent / "usr/local/lib/sluice/healthcheck.py"
    line = [str(venv / "bin" / "python"), str(check), str(pid)]
    return subprocess.run(line, env=env, capture_output=True, timeout=30).returncode


def test_the_healthcheck_asks_an_ingress_and_passes_a_worker_without_health_port(
    image: tuple[Path, Path], shared_server: RedisServer
) -> None:
    venv, workdir = image
    port = free_port()
    env = {
        **in_image(venv),
        "REDIS_URL": shared_server.url,
        "SLUICE_INGRESS_HOST": "127.0.0.1",
        "SLUICE_INGRESS_PORT": str(port),
    }
    ingress = subprocess.Popen(["sluice", "ingress"], cwd=workdir, env=env)
    try:
        with serving(port):
            assert healthcheck(image, ingress.pid, env) == 0
            elsewhere = {**env, "SLUICE_INGRESS_PORT": str(free_port())}
            assert healthcheck(image, ingress.pid, elsewhere) == 1
    finally:
        ingress.terminate()
        ingress.wait(timeout=30)
    # Without SLUICE_HEALTH_PORT a worker answers nothing: healthy while it runs.
    python = str(venv / "bin" / "python")
    worker = subprocess.Popen([python, "-c", "import time; time.sleep(60)", "worker"])
    try:
        assert healthcheck(image, worker.pid, env) == 0
    finally:
        worker.kill()
        worker.wait()


def test_the_healthcheck_asks_a_workers_health_port(
    image: tuple[Path, Path], server: RedisServer
) -> None:
    venv, workdir = image
    port = free_port()
    env = {**in_image(venv), "REDIS_URL": server.url, "SLUICE_HEALTH_PORT": str(port)}
    line = ["sluice", "worker", "--functions", "webhook.deliver"]
    worker = subprocess.Popen(line, cwd=workdir, env=env)
    try:
        with serving(port):
            assert healthcheck(image, worker.pid, env) == 0
            server.pause()
            try:
                assert healthcheck(image, worker.pid, env) == 1
            finally:
                server.resume()
            assert healthcheck(image, worker.pid, env) == 0
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@contextlib.contextmanager
def serving(port: int) -> Iterator[None]:
    """Once something answers HTTP on 127.0.0.1:`port`: a process just started, and
    its socket is the only event there is to wait for."""
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answered on port {port}") from None
            time.sleep(0.05)  # polling a process just spawned: no event to await
    yield


# --- settings, functions, ports, probes --------------------------------------


def known(name: str) -> bool:
    """A Sluice setting, or a variable the README documents (OTEL_*)."""
    readme = (ROOT / "README.md").read_text()
    return (
        name in VARIABLES
        or name in REDIS_PARTS
        or name == PLATFORM_PORT
        or (name.startswith("OTEL_") and f"`{name}`" in readme)
    )


def test_every_variable_named_is_a_setting_with_a_valid_value() -> None:
    environments = [s["environment"] for s in compose_services().values()]
    environments.append(k8s_environment())
    for env in environments:
        assert [name for name in env if not known(name)] == []
        from_env(env)  # a bad value raises ConfigurationError, naming it
    assert all("env" not in c for c in containers()), "settings belong in the ConfigMap"


def test_every_function_runs_in_exactly_one_worker_group() -> None:
    compose = [
        functions_option(s["command"])
        for s in compose_services().values()
        if s["command"][0] == "worker"
    ]
    k8s = [functions_option(c["args"]) for c in containers() if c["args"][0] == "worker"]
    for groups in (compose, k8s):
        assert sorted(n for group in groups for n in group) == sorted(NAMES)


def test_the_ingress_port_and_probe_paths_are_the_ingress_own() -> None:
    public = {r.path for r in ROUTES if r.method == "GET" and r.handler.access == "public"}
    port = from_env(k8s_environment()).ingress_port
    (ingress,) = [c for c in containers() if c["args"] == ["ingress"]]
    assert ingress["ports"] == [{"name": "http", "containerPort": port}]
    assert ingress["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ingress["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"/readyz", "/healthz"} <= public
    (service,) = manifests("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    compose = compose_services()["ingress"]
    assert compose["ports"] == [f"{port}:{from_env(compose['environment']).ingress_port}"]
    (scrape,) = documents(INFRA / "prometheus.yml")[0]["scrape_configs"]
    assert scrape["metrics_path"] in {r.path for r in ROUTES}
    assert scrape["static_configs"] == [{"targets": [f"ingress:{port}"]}]


def test_workers_and_schedulers_are_probed_on_their_health_port() -> None:
    port = from_env(k8s_environment()).health_port
    assert port, "SLUICE_HEALTH_PORT is set for the workers and the scheduler"
    probed = set()
    for container in containers():
        assert {"readinessProbe", "livenessProbe"} <= set(container), container["name"]
        if container["args"] == ["ingress"]:
            continue
        probed.add(container["args"][0])
        assert container["ports"] == [{"name": "health", "containerPort": port}]
        ready, live = container["readinessProbe"], container["livenessProbe"]
        # Liveness asks only that the loop turns: an outage of Redis restarts nothing.
        assert ready["httpGet"] == {"path": READY_PATH, "port": "health"}
        assert live["httpGet"] == {"path": LIVE_PATH, "port": "health"}
        # Time to hear the answer (a supervisor's waits for its slowest process).
        assert min(ready["timeoutSeconds"], live["timeoutSeconds"]) > ASK_TIMEOUT_S
    assert probed == {"worker", "scheduler"}
    # A pod not ready because Redis is down does not hold up a node's drain.
    budgets = manifests("PodDisruptionBudget")
    assert {b["spec"].get("unhealthyPodEvictionPolicy") for b in budgets} == {"AlwaysAllow"}
    for service in compose_services().values():
        if service["command"] != ["ingress"]:
            assert from_env(service["environment"]).health_port
            assert service["healthcheck"]["test"] == ["CMD", "sluice", "check"]


def test_pods_outlast_the_grace_period_and_are_budgeted() -> None:
    grace_s = from_env(k8s_environment()).grace_s
    budgets = {
        tuple(sorted(b["spec"]["selector"]["matchLabels"].items()))
        for b in manifests("PodDisruptionBudget")
    }
    (uid,) = re.findall(r"useradd .*--uid (\d+)", (INFRA / "Dockerfile").read_text())
    for deployment in manifests("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": int(uid)}
        (container,) = pod["containers"]
        pause = container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
        pause_s = float(pause["command"][1]) if pause else 0.0
        assert pod["terminationGracePeriodSeconds"] > grace_s + pause_s
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert [e for f in container["envFrom"] for e in f.values()] == [
            {"name": "sluice-settings"},
            {"name": "sluice-secrets"},
        ]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert tuple(sorted(selector.items())) in budgets
    for service in compose_services().values():
        stop_s = float(service["stop_grace_period"].removesuffix("s"))
        assert stop_s > from_env(service["environment"]).grace_s


def test_prometheus_scrapes_with_an_admin_key_of_the_compose_ingress() -> None:
    stored = compose_services()["ingress"]["environment"]["SLUICE_API_KEYS"]
    keys = msgspec.json.decode(stored, type=list[ApiKey])
    key = (INFRA / "compose-admin-key").read_text().strip()
    assert [k.admin for k in keys if k.hash == digest(key)] == [True]


# --- KEDA --------------------------------------------------------------------


def keda_queries() -> Iterator[tuple[str, str]]:
    """(the worker Deployment scaled, each Prometheus query of its triggers)."""
    for scaled in manifests("ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "prometheus"
            yield scaled["spec"]["scaleTargetRef"]["name"], trigger["metadata"]["query"]


async def test_keda_scales_each_group_on_metrics_the_ingress_shows(
    redis: Redis, shared_server: RedisServer
) -> None:
    api = await start_api(redis, shared_server.url)
    try:
        client = Client(redis, Registry(list(FUNCTIONS)))
        sms = {"to": "+15550100", "body": "soon"}
        await client.publish("sms.send", workspace="acme", data=sms, delay_ms=120_000)
        answer = await api.http.get("/metrics", headers=api.auth("admin"))
        text = await answer.text()
    finally:
        await api.http.close()
    shown = {
        (sample.name, label, value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for label, value in sample.labels.items()
    }
    args = {
        d["metadata"]["name"]: c["args"]
        for d in manifests("Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    metrics = set()
    for target, query in keda_queries():
        for metric, selectors in re.findall(r"(sluice_\w+)\{([^}]*)\}", query):
            metrics.add(metric)
            for label, value in re.findall(r'(\w+)=~?"([^"]*)"', selectors):
                if label == "function":
                    assert set(value.split("|")) == functions_option(args[target])
                else:
                    assert (metric, label, value) in shown, (metric, label, value)
            assert any(name == metric for name, _, _ in shown), metric
    assert metrics == {"sluice_jobs_waiting", "sluice_jobs_due_soon"}
    assert ("sluice_jobs_due_soon", "within_minutes", "5") in shown


def test_the_redis_streams_alternative_names_sluices_keys() -> None:
    text = (K8S / "keda.yaml").read_text()
    assert f'consumerGroup "{GROUP}"' in text
    assert f'"{PartitionKeys("sms.send", 0).stream}"' in text


# --- a container engine, where there is one ---------------------------------


def docker_engine() -> str | None:
    """Why the image cannot be built here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker command"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return f"no container engine answers `docker info`: {info.stderr.strip()[:200]}"
    return None


def test_the_image_builds_and_the_compose_file_is_valid() -> None:
    reason = docker_engine()
    if reason is not None:
        pytest.skip(f"{reason}; the image's install steps ran in a virtualenv instead")
    tag = "sluice:test-infra"
    build = ["docker", "build", "-f", str(INFRA / "Dockerfile"), "-t", tag, str(ROOT)]
    subprocess.run(build, check=True, timeout=900)
    ran = subprocess.run(["docker", "run", "--rm", tag, "--help"], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "worker" in ran.stdout
    config = ["docker", "compose", "-f", str(INFRA / "compose.yaml"), "config", "--quiet"]
    subprocess.run(config, check=True, timeout=60, cwd=ROOT)
