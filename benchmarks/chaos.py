"""chaos: an endpoint under load at 32 clients while, on the same machine and store, a search trains the model's next
version, and three things die by SIGKILL: the endpoint's replica, a Ray Train worker of a DDP trial, and the search's
driver with its whole Ray runtime (a machine going down), which `kiln run --resume` then continues.

    .venv/bin/python benchmarks/chaos.py [--clients 32] [--load-s 60]

Prints, and records in results.json, the share of requests that succeeded (`chaos_request_success_rate`: clients
that retry a failed request for up to 20 s, as the serving fault test's client does; the share that succeeded at
the first try is in the detail), the epochs trained twice, and whether any trial, metric or model version was lost.
The load lasts `--load-s`, or longer if the three kills have not all happened by then. About 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import record  # noqa: E402
from tests_support import KILN, descendants_named, free_port, kill_with_children, store_client  # noqa: E402

NAME = "chaos-mlp"
EPOCHS, TRIALS = 30, 3  # a DDP epoch of digits is ~0.1-0.3 s here: enough of them to be killed mid-trial
RETRY_S, REQUEST_TIMEOUT_S = 20.0, 10.0
# The search being killed: DDP trials (2 workers, so there is a Ray Train worker to kill), run to the end (fifo),
# so every trial's metric history must hold every epoch once it is resumed.
SEARCH = [
    "--no-serve",
    "--set",
    "name=chaos-search",
    "--set",
    f"registry.model_name={NAME}",
    "--set",
    f"tune.num_samples={TRIALS}",
    "--set",
    "tune.scheduler.name=fifo",
    "--set",
    'tune.search_space={"train.lr": {"choice": [0.003, 0.001, 0.002]}}',
    "--set",
    f"train.epochs={EPOCHS}",
    "--set",
    "train.num_workers=2",
    "--set",
    "train.cpus_per_worker=0.5",
]
EPOCH_LINE = re.compile(r"trial (\S+) epoch (\d+): ")


class Process:
    """A `kiln` command whose output is read on a thread into `lines`."""

    def __init__(self, args: list[str], *, new_session: bool = False):
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            [KILN, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=new_session,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, timeout_s: float, what: str, after: int = 0) -> None:
        """Until a line printed after the first `after` ones satisfies `predicate`."""
        deadline = time.monotonic() + timeout_s
        while not any(predicate(line) for line in self.lines[after:]):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.lines[-30:])
                raise SystemExit(f"chaos: {what} did not happen (exit {self.popen.poll()}):\n{tail}")
            time.sleep(0.2)


def pids(root: Process, pattern: str) -> list[int]:
    """The processes `root` started whose command line matches: a kiln process's own runtime is under it."""
    return descendants_named(root.popen.pid, pattern)


class Load:
    """`clients` threads posting one row each, one request after another; a failed request is retried for up to
    RETRY_S. Counts attempts (first-try view) and requests (the retrying client's view), and versions answered."""

    def __init__(self, url: str, clients: int):
        self.url, self.stop = url, threading.Event()
        self.attempts = self.attempts_ok = self.requests = self.requests_ok = 0
        self.versions: set[int] = set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        import requests

        session, body = requests.Session(), {"instances": [[0.0] * 64]}
        while not self.stop.is_set():
            deadline, ok, tries = time.monotonic() + RETRY_S, False, 0
            while not ok and time.monotonic() < deadline:
                tries += 1
                try:
                    answer = session.post(self.url, json=body, timeout=REQUEST_TIMEOUT_S)
                    ok = answer.status_code == 200
                    if ok:
                        with self.lock:
                            self.versions.add(answer.json()["version"])
                except requests.RequestException:
                    session = requests.Session()
                if not ok:
                    time.sleep(0.2)
            with self.lock:
                self.attempts += tries
                self.attempts_ok += ok
                self.requests += 1
                self.requests_ok += ok

    def end(self) -> float:
        self.stop.set()
        for thread in self.threads:
            thread.join(RETRY_S + REQUEST_TIMEOUT_S + 5)
        return time.monotonic() - self.started


def lost(root: Path, trial_lines: list[str]) -> dict:
    """What the store lacks after the resumed search, and the epochs trained more than once."""
    client = store_client(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("chaos-search")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("kiln.kind") == "trial"]
    histories = {
        r.data.tags["kiln.trial_id"]: sorted({m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")})
        for r in trials
    }
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{NAME}'"))
    reported = [m.groups() for m in map(EPOCH_LINE.search, trial_lines) if m]
    return {
        "trials_lost": TRIALS - sum(r.info.status == "FINISHED" for r in trials),
        "metric_epochs_lost": sum(EPOCHS - len(set(h) & set(range(1, EPOCHS + 1))) for h in histories.values())
        + EPOCHS * (TRIALS - len(histories)),
        "versions": versions,
        "versions_lost": 2 - len(versions),
        "epochs_reported": len(reported),
        "epochs_recomputed": len(reported) - len(set(reported)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--load-s", type=float, default=60.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kiln-chaos-")) / "runs"
    store = ["--set", f"storage.root={root}"]
    config = "configs/quickstart.yaml"

    print("chaos: registering v1 (one short trial)", flush=True)
    first = subprocess.run(
        [
            KILN,
            "run",
            config,
            *store,
            "--no-serve",
            "--set",
            f"registry.model_name={NAME}",
            "--set",
            "tune.num_samples=1",
            "--set",
            "tune.search_space={}",
            "--set",
            "train.epochs=2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if first.returncode != 0:
        raise SystemExit(f"chaos: the first run failed:\n{first.stdout[-2000:]}{first.stderr[-2000:]}")

    port = free_port()
    endpoint = Process(
        ["serve", "--model", f"{NAME}@champion", *store, "--set", f"serve.port={port}"], new_session=True
    )
    search = None
    try:
        endpoint.wait_for(lambda line: line.startswith("Endpoint:"), 300, "the endpoint")
        replicas = pids(endpoint, "ServeReplica:")
        if not replicas:
            raise SystemExit("chaos: no Serve replica process found")
        search = Process(["run", config, *store, *SEARCH])
        search.wait_for(lambda line: " epoch 1: " in line, 300, "the search's first epoch")
        print(f"chaos: {args.clients} clients on http://127.0.0.1:{port}/predict while the search trains", flush=True)
        load = Load(f"http://127.0.0.1:{port}/predict", args.clients)
        kills: dict[str, float] = {}

        time.sleep(5)
        for pid in replicas:
            os.kill(pid, signal.SIGKILL)
        kills["replica"] = time.monotonic() - load.started
        workers: list[int] = []
        deadline = time.monotonic() + 120
        while not workers:  # a worker mid-trial: after a trial's third epoch (it has checkpoints to resume from)
            seen = len(search.lines)
            search.wait_for(
                lambda line: EPOCH_LINE.search(line) and int(EPOCH_LINE.search(line).group(2)) >= 3,
                120,
                "a third epoch",
                after=seen,
            )
            workers = pids(search, "RayTrainWorker")
            if not workers and time.monotonic() > deadline:
                raise SystemExit(
                    "chaos: no Ray Train worker process found; the search printed:\n" + "\n".join(search.lines[-20:])
                )
        os.kill(workers[-1], signal.SIGKILL)
        kills["train_worker"] = time.monotonic() - load.started
        # the driver dies once a trial has finished and another is under way, as in tests/integration/test_resume.py
        search.wait_for(lambda line: f"finished {EPOCHS} epochs" in line, 300, "a finished trial")
        search.wait_for(lambda line: " epoch " in line, 300, "a later epoch", after=len(search.lines))
        kill_with_children(search.popen.pid)
        search.popen.wait(60)
        kills["driver"] = time.monotonic() - load.started
        before = list(search.lines)
        resumed = Process(["run", config, *store, *SEARCH, "--resume"])
        while time.monotonic() - load.started < args.load_s:
            time.sleep(0.5)
        load_s = load.end()
        code = resumed.popen.wait(900)
        if code != 0:
            raise SystemExit(f"chaos: the resumed search exited {code}:\n" + "\n".join(resumed.lines[-30:]))
        resumed_at = next((line for line in resumed.lines if "resuming search" in line), None)
        store_check = lost(root, before + resumed.lines)
    finally:
        if endpoint.popen.poll() is None:
            os.killpg(endpoint.popen.pid, signal.SIGINT)
            endpoint.popen.wait(120)
        if search is not None and search.popen.poll() is None:
            kill_with_children(search.popen.pid)

    rate = load.requests_ok / max(load.requests, 1)
    detail = {
        "clients": args.clients,
        "load_s": round(load_s, 1),
        "kills_at_s": {k: round(v, 1) for k, v in kills.items()},
        "requests": load.requests,
        "requests_ok": load.requests_ok,
        "first_try_success_rate": round(load.attempts_ok / max(load.attempts, 1), 4),
        "versions_answered": sorted(load.versions),
        "resumed": resumed_at is not None,
        **store_check,
    }
    print(json.dumps(detail, indent=2))
    print(
        f"chaos: {rate:.2%} of {load.requests} requests succeeded (retrying clients), "
        f"{detail['first_try_success_rate']:.2%} of attempts at the first try; "
        f"{store_check['epochs_recomputed']} epochs trained twice; lost: {store_check['trials_lost']} trials, "
        f"{store_check['metric_epochs_lost']} metric epochs, {store_check['versions_lost']} model versions"
    )
    record(
        [
            {
                "name": "chaos_request_success_rate",
                "value": round(rate, 4),
                "unit": "share",
                "target": None,
                "baseline": f"{args.clients} retrying clients, {load_s:.0f} s; replica, DDP worker and driver "
                "SIGKILLed, driver resumed",
                "detail": detail,
            }
        ]
    )


if __name__ == "__main__":
    main()
