"""platform/: manifests parse, what they reference exists, pins agree with pyproject.toml, scripts are sane.

Fast and offline: no services, no Docker, no Kubernetes; Ray is located on disk, never imported."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from pipelines.config import load_config

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"
MANIFESTS = sorted(PLATFORM.rglob("*.yaml"))
SCRIPTS = sorted(PLATFORM.glob("*.sh"))
DOCKERFILE = PLATFORM / "Dockerfile"
IMAGE_REPO = "kiln"  # the image built from platform/Dockerfile


def docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_docs() -> list[dict]:
    return [doc for path in MANIFESTS if path.parent.name in ("kuberay", "mlflow") for doc in docs(path)]


def by_kind(kind: str) -> list[dict]:
    return [doc for doc in k8s_docs() if doc["kind"] == kind]


def walk(node, key: str):
    """Every value stored under `key`, anywhere in a parsed document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins() -> dict[str, tuple[str, str]]:
    """name -> (extras, version) for every `name[extras]==version` dependency of pyproject.toml."""
    found = {}
    for dep in pyproject()["project"]["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", dep.strip())
        if m:
            found[m[1].lower()] = (m[2] or "", m[3])
    return found


def versions_in(text: str, name: str) -> list[tuple[str, str]]:
    """(extras, version) of every `name[extras]==version` in a Dockerfile or shell command."""
    return re.findall(rf"(?<![\w-]){re.escape(name)}(\[[^\]]*\])?==([0-9][\w.+-]*)", text)


def containers() -> list[dict]:
    return [c for doc in k8s_docs() for cs in walk(doc, "containers") for c in cs]


# ---------------------------------------------------------------------------------------------- layout


def test_platform_is_not_a_python_package():
    assert not list(PLATFORM.rglob("__init__.py"))
    assert not list(PLATFORM.rglob("*.py")), "platform/ holds no Python: it would shadow the stdlib module"
    assert not (ROOT / "platform.py").exists()


def test_the_expected_files_exist():
    for name in (
        "cluster-up.sh",
        "cluster-down.sh",
        "check-auth.sh",
        "cluster-launcher.yaml",
        "Dockerfile",
        "kuberay/rayjob.yaml",
        "kuberay/rayservice.yaml",
        "mlflow/mlflow.yaml",
        "README.md",
    ):
        assert (PLATFORM / name).is_file(), name
    assert (ROOT / "configs" / "cluster.yaml").is_file()


# ------------------------------------------------------------------------------------------- manifests


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_manifest_parses(path):
    assert docs(path), f"{path}: no YAML documents"


def test_kubernetes_objects_are_well_formed():
    objects = k8s_docs()
    assert {"RayJob", "RayService", "Deployment", "Service", "StatefulSet"} <= {o["kind"] for o in objects}
    for obj in objects:
        assert obj.get("apiVersion") and obj["metadata"].get("name"), obj


def test_services_stay_inside_the_cluster():
    for svc in by_kind("Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
    for job in by_kind("RayJob"):
        assert job["spec"]["rayClusterSpec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    for service in by_kind("RayService"):
        assert service["spec"]["rayClusterConfig"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_ray_clusters_use_token_auth_and_the_pinned_ray():
    specs = [j["spec"]["rayClusterSpec"] for j in by_kind("RayJob")]
    specs += [s["spec"]["rayClusterConfig"] for s in by_kind("RayService")]
    assert specs
    for spec in specs:
        assert spec["authOptions"]["mode"] == "token"
        assert spec["rayVersion"] == pins()["ray"][1]


def test_containers_run_the_kiln_image_or_a_known_one():
    version = pyproject()["project"]["version"]
    images = {c["image"] for c in containers()}
    assert f"{IMAGE_REPO}:{version}" in images
    for image in images:
        repo = image.rsplit("/", 1)[-1].split(":")[0]
        assert repo in (IMAGE_REPO, "postgres"), image
        if repo == IMAGE_REPO:
            assert image.endswith(f":{version}"), f"{image}: tag it with the project version {version}"


def entrypoint_args() -> list[str]:
    (job,) = by_kind("RayJob")
    return shlex.split(job["spec"]["entrypoint"])


def test_rayjob_runs_kiln_on_the_cluster_config():
    args = entrypoint_args()
    assert "kiln" in pyproject()["project"]["scripts"]
    start = args.index("kiln")
    assert args[start + 1 : start + 3] == ["run", "configs/cluster.yaml"]
    assert "--no-serve" in args, "with serving on, `kiln run` never returns and the job never finishes"
    # the overrides are valid keys and values of the config
    overrides = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
    cfg = load_config(ROOT / "configs" / "cluster.yaml", overrides)
    assert cfg.storage.root.startswith("/mnt/kiln")


def test_rayjob_references_exist():
    (job,) = by_kind("RayJob")
    claims = {c for c in walk(job, "claimName")}
    pvcs = {p["metadata"]["name"] for p in by_kind("PersistentVolumeClaim")}
    assert claims and claims <= pvcs
    mounts = {m["mountPath"] for ms in walk(job, "volumeMounts") for m in ms}
    args = entrypoint_args()
    storage = next(a.split("=", 1)[1] for a in args if a.startswith("storage.root="))
    assert any(storage.startswith(m) for m in mounts), f"storage.root {storage} is on no mounted volume"


def tracking_hosts() -> set[str]:
    hosts = {a.split("=", 1)[1] for a in entrypoint_args() if a.startswith("tracking.uri=")}
    hosts |= set(walk(by_kind("RayService"), "tracking_uri"))
    return {re.match(r"https?://([^:/]+)", uri)[1] for uri in hosts}


def test_tracking_uri_and_database_point_at_defined_services():
    services = {s["metadata"]["name"] for s in by_kind("Service")}
    assert tracking_hosts() <= services
    (deployment,) = by_kind("Deployment")
    args = " ".join(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    db_host = re.search(r"--backend-store-uri=postgresql\+psycopg2://\w+@([\w-]+):", args)[1]
    assert db_host in services


def test_mlflow_server_flags():
    (deployment,) = by_kind("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert container["command"] == ["mlflow", "server"]
    assert "--serve-artifacts" in args
    assert any(a.startswith("--artifacts-destination=s3://") for a in args)
    assert any(a.startswith("--allowed-hosts=") for a in args)
    assert args[args.index("--app-name") + 1] == "basic-auth"
    env = {e["name"] for e in container["env"]}
    assert {"MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= env
    config_maps = {c["metadata"]["name"] for c in by_kind("ConfigMap")}
    mounted = {volume["name"] for volume in walk(k8s_docs(), "configMap")}
    assert mounted and mounted <= config_maps


def test_secrets_referenced_are_documented():
    """Secrets are created by hand (never committed): each one's creation is shown in a manifest header."""
    referenced = {ref["name"] for ref in walk(k8s_docs(), "secretKeyRef")}
    text = "\n".join(p.read_text() for p in MANIFESTS)
    for name in referenced:
        assert f"kubectl create secret generic {name}" in text, name


def test_rayservice_serves_the_champion_through_kiln_serving():
    (service,) = by_kind("RayService")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    (app,) = serve_config["applications"]
    module, _, attr = app["import_path"].partition(":")
    assert module == "serving.app" and attr
    assert (ROOT / "serving" / "app.py").is_file()
    assert re.fullmatch(r"[\w.-]+@champion", app["args"]["model"])
    config = app["args"]["config"]
    assert config.startswith("/app/") and (ROOT / config.removeprefix("/app/")).is_file()
    # the deployment named in the Serve config is the class in serving/app.py
    tree = ast.parse((ROOT / "serving" / "app.py").read_text())
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {d["name"] for d in app.get("deployments", [])} <= classes


def test_rayservice_entry_point_exists():
    (service,) = by_kind("RayService")
    attr = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["import_path"].split(":")[1]
    tree = ast.parse((ROOT / "serving" / "app.py").read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    if attr not in names:
        pytest.skip(f"serving.app:{attr} not implemented yet (platform/README.md describes it)")


def test_http_binds_to_loopback_or_cluster_ip():
    (service,) = by_kind("RayService")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve_config["http_options"]["port"] == 8000
    cfg = load_config(ROOT / "configs" / "cluster.yaml")
    assert cfg.serve.host == "127.0.0.1"


# ----------------------------------------------------------------------------------------- the image


def test_dockerfile_pins_agree_with_pyproject():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "--index-url https://download.pytorch.org/whl/cpu torch==" in text
    for name in ("torch", "ray", "mlflow"):
        extras, version = pins()[name]
        found = versions_in(text, name)
        assert found, f"{name} is not pinned in the Dockerfile"
        assert {v for _, v in found} == {version}, f"{name}: Dockerfile {found} vs pyproject {version}"
        if name == "ray":
            assert {e for e, _ in found} == {extras}


def test_dockerfile_copies_what_exists():
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert (ROOT / src).exists(), src
    ignore = (PLATFORM / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignore


def test_manifests_name_the_dockerfile():
    for path in MANIFESTS:
        if any(
            c.get("image", "").startswith(IMAGE_REPO + ":")
            for d in docs(path)
            for cs in walk(d, "containers")
            for c in cs
        ):
            assert "platform/Dockerfile" in path.read_text(), f"{path}: say which Dockerfile builds the image"


# ---------------------------------------------------------------------------------- cluster launcher


def test_cluster_launcher():
    (launcher,) = docs(PLATFORM / "cluster-launcher.yaml")
    assert launcher["provider"]["type"] == "local"
    assert launcher["provider"]["head_ip"] == "HEAD_IP"
    assert launcher["provider"]["worker_ips"] and all(
        ip.startswith("WORKER_IP") for ip in launcher["provider"]["worker_ips"]
    )
    setup = "\n".join(launcher["setup_commands"])
    assert "--index-url https://download.pytorch.org/whl/cpu torch==" in setup
    for name in ("torch", "ray", "mlflow"):
        extras, version = pins()[name]
        found = versions_in(setup, name)
        assert found and {v for _, v in found} == {version}, f"{name}: launcher {found} vs pyproject {version}"
    for local in launcher["file_mounts"].values():
        if not local.startswith("~"):
            assert (ROOT / local).exists(), local
    starts = launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)


def test_extra_pins_agree_everywhere():
    """Packages pyproject.toml does not pin yet (the PostgreSQL driver) have one version across platform/."""
    texts = [
        DOCKERFILE.read_text(),
        (PLATFORM / "cluster-launcher.yaml").read_text(),
        (PLATFORM / "cluster-up.sh").read_text(),
        (ROOT / "pyproject.toml").read_text(),
    ]
    versions = {v for text in texts for _, v in versions_in(text, "psycopg2-binary")}
    assert len(versions) == 1, versions


# -------------------------------------------------------------------------------------------- scripts


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_script_is_executable_and_parses(path):
    assert os.access(path, os.X_OK), f"chmod +x {path.relative_to(ROOT)}"
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    if path.name != "cluster-lib.sh":  # sourced, not run
        assert text.startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in text


def test_local_cluster_stays_on_loopback():
    lib = (PLATFORM / "cluster-lib.sh").read_text()
    assert re.search(r"^HOST=127\.0\.0\.1\b", lib, re.M)
    up = (PLATFORM / "cluster-up.sh").read_text()
    for flag in (
        '--node-ip-address="$HOST"',
        '--dashboard-host="$HOST"',
        '--host "$HOST"',
        "listen_addresses=$HOST",
        "--allowed-hosts",
        "export RAY_AUTH_MODE=token",
        "--serve-artifacts --artifacts-destination",
    ):
        assert flag in up, flag
    # `ray stop` stops every Ray runtime on the machine: only on request (a dedicated host)
    lines = (PLATFORM / "cluster-down.sh").read_text().splitlines()
    stops = [i for i, line in enumerate(lines) if re.search(r"\bstop\b", line) and "RAY_BIN" in line]
    assert len(stops) == 1 and "KILN_RAY_STOP_ALL" in lines[stops[0] - 2] + lines[stops[0] - 1]


def test_cluster_config_matches_the_local_cluster():
    cfg = load_config(ROOT / "configs" / "cluster.yaml")
    assert cfg.ray.address == "auto"
    lib = (PLATFORM / "cluster-lib.sh").read_text()
    port = re.search(r"^MLFLOW_PORT=\$\{KILN_MLFLOW_PORT:-(\d+)\}", lib, re.M)[1]
    assert cfg.tracking.uri == f"http://127.0.0.1:{port}"
    assert cfg.storage.root == str(ROOT / "kiln-cluster" / "storage")  # made absolute at load


def test_check_auth_sends_the_header_ray_expects():
    spec = importlib.util.find_spec("ray")  # locates the package without importing it
    constants = Path(spec.origin).parent / "_private" / "authentication" / "authentication_constants.py"
    text = constants.read_text()
    header = re.search(r'^AUTHORIZATION_HEADER_NAME = "([^"]+)"', text, re.M)[1]
    prefix = re.search(r'^AUTHORIZATION_BEARER_PREFIX = "([^"]+)"', text, re.M)[1]
    script = (PLATFORM / "check-auth.sh").read_text()
    assert f"{header.title()}: {prefix}%s" in script
