"""The endpoint for real: a local Ray runtime, Ray Serve over HTTP, a throwaway MLflow store with two versions.

One module fixture deploys NAME@champion; every test leaves it answering good requests.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests
from serving_support import FEATURES, fuzz, tiny_store

from tests_support import ROOT, descendants_named, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own pydantic v1-style fields

NAME = "serving-tiny"
MAX_ONGOING, MAX_QUEUED = 4, 8  # a burst of clients waits in the queue before assignment: keep it roomy
TIMEOUT_S = 4.0
MAX_BODY_BYTES = 64 * 1024


class Live:
    def __init__(self, cfg, frame, port):
        self.cfg, self.frame, self.port = cfg, frame, port
        self.url = f"http://127.0.0.1:{port}"
        self.rows = frame[FEATURES].head(2).to_numpy().tolist()

    def predict(self, rows=None, timeout_s: float = 30) -> requests.Response:
        return requests.post(f"{self.url}/predict", json={"instances": rows or self.rows}, timeout=timeout_s)

    def assert_good(self) -> None:
        answer = self.predict()
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] and answer.headers["X-Model-Version"] == str(answer.json()["version"])


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from pipelines import deploy
    from pipelines.cluster import runtime

    port = free_port()
    cfg, frame = tiny_store(
        tmp_path_factory.mktemp("serving"),
        NAME,
        [
            f"serve.port={port}",
            f"serve.max_ongoing_requests={MAX_ONGOING}",
            f"serve.max_queued_requests={MAX_QUEUED}",
            f"serve.request_timeout_s={TIMEOUT_S}",
            f"serve.max_body_bytes={MAX_BODY_BYTES}",
            "serve.max_batch_size=4",
            "serve.batch_wait_timeout_s=0.01",
            "serve.reload_interval_s=0.5",
        ],
    )
    runtime.start(cfg, env=deploy.ingress_env(cfg))  # Kiln's own runtime, with its default ingress
    from serving.app import deploy  # after the start: Serve reads its ingress settings at import

    try:
        url = deploy(cfg, name=NAME, alias="champion")
        assert url == f"http://127.0.0.1:{port}"
        yield Live(cfg, frame, port)
    finally:
        runtime.stop()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def test_predict_and_health_carry_the_version(live):
    answer = live.predict()
    assert answer.status_code == 200
    assert answer.json() == {"predictions": live.frame["label"].head(2).tolist(), "model": NAME, "version": 1}
    assert answer.headers["X-Model-Version"] == "1"
    health = requests.get(f"{live.url}/healthz", timeout=10)
    assert health.json() == {"status": "ok", "model": NAME, "version": 1} and health.headers["X-Model-Version"] == "1"


def test_open_inference_protocol_with_tritonclient(live):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=f"127.0.0.1:{live.port}", network_timeout=30)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
        meta = client.get_model_metadata(NAME)
        assert meta["name"] == NAME and meta["versions"] == ["1"] and meta["platform"]
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        assert meta["outputs"] == [{"name": "predictions", "datatype": "BYTES", "shape": [-1]}]
        rows = live.frame[FEATURES].head(5).to_numpy()
        expected = live.frame["label"].head(5).tolist()
        for binary in (True, False):  # tritonclient's default (binary tensors) and plain JSON
            tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows.astype(np.float32), binary_data=binary)
            wanted = triton.InferRequestedOutput("predictions", binary_data=binary)
            result = client.infer(NAME, [tensor], outputs=[wanted])
            assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predictions")] == expected
            assert result.get_response()["model_version"] == "1"
        pinned = client.infer(NAME, [tensor], model_version="1")  # no outputs named: binary by default
        assert len(pinned.as_numpy("predictions")) == 5
        wrong = triton.InferInput("input-0", [1, 3], "FP64")
        wrong.set_data_from_numpy(np.ones((1, 3)))
        with pytest.raises(InferenceServerException, match=r"expected shape \[N, 4\]"):
            client.infer(NAME, [wrong])
    finally:
        client.close()


def test_columnar_v2_request_and_400_naming_the_problem(live):
    head = live.frame.head(3)
    inputs = [{"name": f, "shape": [3], "datatype": "FP64", "data": head[f].tolist()} for f in FEATURES]
    answer = requests.post(f"{live.url}/v2/models/{NAME}/infer", json={"inputs": inputs}, timeout=30)
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
    assert answer.json()["outputs"][0]["data"] == head["label"].tolist()
    bad = requests.post(f"{live.url}/v2/models/{NAME}/infer", json={"inputs": inputs[:3]}, timeout=30)
    assert bad.status_code == 400 and bad.json() == {"error": "missing input for feature 'd'"}
    live.assert_good()


def test_bad_rows_422(live):
    bad = live.predict([[1, 2, 3, "x"]])
    assert bad.status_code == 422 and bad.json()["detail"] == "instances[0][3] (d): expected a number, got 'x'"
    live.assert_good()


def test_body_over_the_limit_413_without_reading_it(live):
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:  # declares 1 GiB, sends 1 KiB
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % 2**30 + b"[" * 1024
        )
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert answer.status == 413 and "serve.max_body_bytes" in json.loads(answer.read())["detail"]
    big = json.dumps({"instances": [[1.5, 2.5, 3.5, 4.5]] * 4000}).encode()
    assert len(big) > MAX_BODY_BYTES
    chunks = (big[i : i + 8192] for i in range(0, len(big), 8192))  # chunked: no Content-Length to check
    answer = requests.post(f"{live.url}/v2/models/{NAME}/infer", data=chunks, timeout=30)
    assert answer.status_code == 413 and "limit is 65536 bytes" in answer.json()["error"]
    live.assert_good()


class Stalled:
    """A client that sends the headers and one byte of a valid body, then waits: it holds a request open."""

    def __init__(self, live: Live):
        body = json.dumps({"instances": live.rows}).encode()
        self.sock = socket.create_connection(("127.0.0.1", live.port), timeout=TIMEOUT_S + 20)
        self.sock.sendall(
            f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:1]
        )
        self.rest = body[1:]

    def status(self, finish: bool) -> int:
        try:
            if finish:
                self.sock.sendall(self.rest)
            response = http.client.HTTPResponse(self.sock)
            response.begin()
            return response.status
        except OSError:
            return 0  # the server already answered and closed
        finally:
            self.sock.close()


def test_request_over_the_timeout_408_or_504(live):
    started = time.monotonic()
    status = Stalled(live).status(finish=False)
    assert status in (408, 504) and time.monotonic() - started < TIMEOUT_S + 10
    live.assert_good()


def test_overload_beyond_the_queue_503(live):
    held = []
    try:
        for _ in range(MAX_ONGOING + MAX_QUEUED):  # one by one: a burst would fill the queue before assignment
            held.append(Stalled(live))
            time.sleep(0.15)
        refused = live.predict(timeout_s=TIMEOUT_S + 10)
    finally:
        statuses = [h.status(finish=True) for h in held]
    assert refused.status_code == 503, (refused.text, statuses)
    assert 200 in statuses and set(statuses) <= {200, 503, 0}, statuses  # held requests finish or were refused
    live.assert_good()


def batch_sizes(live: Live) -> tuple[int, int]:
    """(batches formed, batches of more than one request), from the replica's /metrics."""
    text = requests.get(f"{live.url}/metrics", timeout=10).text
    total = float(re.search(r"^kiln_batch_size_count\{[^}]*\} (\S+)$", text, re.M).group(1))
    single = float(re.search(r'^kiln_batch_size_bucket\{[^}]*le="1.0"[^}]*\} (\S+)$', text, re.M).group(1))
    return int(total), int(total - single)


def test_concurrent_single_rows_share_a_forward_pass(live):
    _, merged_before = batch_sizes(live)
    failures = []

    def client():
        with requests.Session() as session:
            for _ in range(20):
                answer = session.post(f"{live.url}/predict", json={"instances": live.rows[:1]}, timeout=30)
                if answer.status_code != 200:
                    failures.append(answer.status_code)

    for _ in range(3):
        threads = [threading.Thread(target=client) for _ in range(MAX_ONGOING)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        if batch_sizes(live)[1] > merged_before:
            break
    assert not failures
    assert batch_sizes(live)[1] > merged_before, "no batch of more than one request formed under concurrency"
    text = requests.get(f"{live.url}/metrics", timeout=10).text
    assert re.search(
        r'kiln_requests_total\{method="POST",model_version="1",replica="[^"]+",route="/predict",'
        r'status="200"\} [1-9]',
        text,
    )
    assert re.search(r'kiln_request_errors_total\{replica="[^"]+",route="/predict",status="422"\}', text)


def test_promote_and_rollback_switch_the_live_endpoint_with_zero_failed_requests(live):
    from pipelines.tracking import registry

    stop, seen = threading.Event(), [[], []]

    def client(log: list):
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    answer = session.post(f"{live.url}/predict", json={"instances": live.rows}, timeout=30)
                    body = answer.json()
                    log.append((answer.status_code, body.get("version"), answer.headers.get("X-Model-Version")))
                except Exception as err:
                    log.append((repr(err), None, None))

    threads = [threading.Thread(target=client, args=(log,), daemon=True) for log in seen]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: all(len(log) > 5 for log in seen), 30, "the clients to start")
        registry.promote(live.cfg, NAME, 2)
        wait_for(lambda: all(log[-1][1] == 2 for log in seen), 60, "responses from v2 after promote")
        registry.rollback(live.cfg, NAME)
        wait_for(lambda: all(log[-1][1] == 1 for log in seen), 60, "responses from v1 after rollback")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    every = [entry for log in seen for entry in log]
    failed = [entry for entry in every if entry[0] != 200]
    assert not failed, f"{len(failed)} of {len(every)} requests failed: {failed[:3]}"
    assert all(str(version) == header for _, version, header in every)
    for log in seen:  # each client saw v1, then only v2, then only v1 again
        versions = [version for _, version, _ in log]
        assert [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]] == [1, 2, 1]


def replica_pids() -> set[int]:
    """This test's replicas: its Ray runtime was started by this very process."""
    return set(descendants_named(os.getpid(), "ServeReplica:kiln"))


def test_a_killed_replica_is_replaced_and_retrying_clients_barely_notice(live):
    """SIGKILL the only replica under a 60 s steady load; a client that retries (up to 20 s a request) keeps >= 99%."""
    load_s, kill_after_s = 60.0, 3.0
    outcomes: list[bool] = []
    before = replica_pids()
    assert before, "no Serve replica process found"
    started = time.monotonic()
    killed = False
    while time.monotonic() - started < load_s:
        if not killed and time.monotonic() - started > kill_after_s:
            for pid in before:
                os.kill(pid, signal.SIGKILL)
            killed = True
        deadline, ok = time.monotonic() + 20, False
        while not ok and time.monotonic() < deadline:
            try:
                ok = live.predict(timeout_s=5).status_code == 200
            except requests.RequestException:
                ok = False
            if not ok:
                time.sleep(0.2)
        outcomes.append(ok)
    rate = sum(outcomes) / len(outcomes)
    print(f"replica killed under load: {sum(outcomes)}/{len(outcomes)} requests succeeded with retries ({rate:.2%})")
    assert killed and rate >= 0.99
    wait_for(lambda: bool(replica_pids() - before), 60, "a replacement replica")
    live.assert_good()


def test_the_rayservice_manifest_application_serves_the_champion(live, monkeypatch):
    """platform/kuberay/rayservice.yaml's Serve application, built by its import_path from its own args (the
    model and tracking server swapped for this store's), answers beside the endpoint, to the token only."""
    import importlib

    import yaml
    from ray import serve

    from pipelines.errors import ConfigError

    manifest = yaml.safe_load((ROOT / "platform" / "kuberay" / "rayservice.yaml").read_text())
    app = yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"][0]
    module, builder = app["import_path"].split(":")
    args = {
        **app["args"],
        "model": f"{NAME}@champion",
        "tracking_uri": live.cfg.tracking_uri,
        "config": str(ROOT / "configs" / Path(app["args"]["config"]).name),
    }
    build = getattr(importlib.import_module(module), builder)
    monkeypatch.delenv("KILN_SERVE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="serve.auth: an application a Serve config or RayService starts"):
        build({k: v for k, v in args.items() if k != "auth"})  # however it is launched: never open
    with pytest.raises(ConfigError):
        build(args)  # auth: token, but no token to check requests against
    monkeypatch.setenv("KILN_SERVE_TOKEN", "manifest-secret-token-0123456789")
    serve.run(
        build(args),
        name="manifest",
        route_prefix="/manifest",
        blocking=False,
    )
    try:
        wait_for(
            lambda: requests.get(f"{live.url}/manifest/v2/health/ready", timeout=5).status_code == 200,
            60,
            "the manifest's application",
        )
        body = {"instances": live.rows}
        assert requests.post(f"{live.url}/manifest/predict", json=body, timeout=30).status_code == 401
        bearer = {"Authorization": "Bearer manifest-secret-token-0123456789"}
        answer = requests.post(f"{live.url}/manifest/predict", json=body, headers=bearer, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Model-Version"] == live.predict().headers["X-Model-Version"]
    finally:
        serve.delete("manifest")


def test_requests_generated_from_the_openapi_document_never_get_a_server_error(live, tmp_path):
    """Schemathesis, a few hundred requests in all (benchmarks/fuzz.py sends over 2,000 per API)."""
    for api, examples in (("kiln", 60), ("v2", 12)):
        result = fuzz(live.url, api=api, examples=examples, workdir=tmp_path)
        assert result["five_xx"] == 0 and result["exit_status"] == 0, result
        assert result["requests"] >= 100, result  # the document's operations were reached, not just one
    assert live.predict().status_code == 200


def test_serving_a_model_another_process_serves_on_the_cluster_is_refused_not_replaced(live):
    """The fixture deployed without recording the application as this process's, as another Kiln would."""
    from pipelines import deploy
    from pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match=f"serve: {NAME} of this store is already served on this cluster"):
        deploy.start_serving(live.cfg, f"{NAME}@champion")
    assert live.predict().status_code == 200  # untouched


def test_a_pinned_version_does_not_follow_the_alias(live):
    """Last: redeploys the endpoint pinned to v1, then moves the alias away from it."""
    from pipelines.tracking import registry
    from serving.app import deploy

    deploy(live.cfg, name=NAME, version=1)
    wait_for(
        lambda: (
            requests.get(f"{live.url}/v2/models/{NAME}", timeout=10).json().get("platform") is not None
            and live.predict().status_code == 200
        ),
        60,
        "the pinned deployment",
    )
    registry.promote(live.cfg, NAME, 2)
    try:
        time.sleep(live.cfg.serve.reload_interval_s * 6)
        answers = [live.predict() for _ in range(5)]
        assert [a.headers["X-Model-Version"] for a in answers] == ["1"] * 5
    finally:
        registry.rollback(live.cfg, NAME)


def listening_addresses() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket on this machine, from /proc/net/tcp and tcp6."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            address, port = local.split(":")
            loopback = address in ("0100007F", "00000000000000000000000001000000")
            wildcard = set(address) == {"0"}
            found.add(("127.0.0.1" if loopback else "*" if wildcard else address[:width], int(port, 16)))
    return found


def test_the_ingress_listens_on_loopback_only(live):
    """HAProxy's HTTP frontend, stats page and metrics exporter bind 127.0.0.1 (at ports of their own)."""
    from serving import ingress

    listening = listening_addresses()
    assert ("127.0.0.1", live.port) in listening
    side = {int(os.environ[key]) for key in ingress.SIDE_PORTS[:2]} if ingress.uses_haproxy(live.cfg) else set()
    assert {("127.0.0.1", port) for port in side} <= listening, sorted(listening)
    exposed = {
        (address, port)
        for address, port in listening
        if address != "127.0.0.1" and port in {live.port, 8404, 9101, *side}
    }
    assert not exposed, f"Serve listens beyond loopback: {sorted(exposed)}"
