"""Shared by the integration tests and their fixtures: paths, free ports, a live `kiln run`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipelines.cluster.ports import free_port  # noqa: F401  (the tests' free ports)

ROOT = Path(__file__).resolve().parents[2]
KILN = str(Path(sys.executable).parent / "kiln")


READY_LINE = "Serving until Ctrl-C."
RUN_TIMEOUT_S = 900


@dataclass
class LiveRun:
    root: Path
    port: int
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    verify: bool | str = True  # for requests: a self-signed endpoint's certificate file (serve.tls_certfile)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def url(self) -> str:
        return f"{'http' if self.verify is True else 'https'}://127.0.0.1:{self.port}"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def stop(self, timeout_s: float = 120, *, signum: int = signal.SIGINT, group: bool = True) -> int:
        """By default Ctrl-C as a terminal sends it: SIGINT to the whole process group (the run is its session's
        leader); `group=False` signals kiln alone, as a supervisor (systemd, a Python parent) does."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum) if group else self.process.send_signal(signum)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def ignore_sigint() -> None:
    """What a non-interactive shell does to a command it starts with `&`: Python then never installs its own
    Ctrl-C handler, so only one that kiln installs itself can stop it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def supervised(command: list[str], *, sigint_ignored: bool = True) -> subprocess.Popen:
    """`command` started as a supervisor starts it: a session of its own, output unbuffered on a pipe, and (by
    default) SIGINT ignored, as a non-interactive shell's `cmd &` leaves it."""
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
        preexec_fn=ignore_sigint if sigint_ignored else None,
    )


def start_run(config: str, root: Path, *extra: str, command_name: str = "run", sigint_ignored: bool = False) -> LiveRun:
    """`kiln run` (or `kiln serve`, with command_name) until it serves; its output lands in `lines`."""
    port = free_port()
    command = [KILN, command_name, config, "--set", f"storage.root={root}", "--set", f"serve.port={port}", *extra]
    process = supervised(command, sigint_ignored=sigint_ignored)
    certs = [a.split("=", 1)[1] for a in extra if str(a).startswith("serve.tls_certfile=")]
    run = LiveRun(root, port, process, verify=certs[0] if certs else True)
    ready = threading.Event()

    def pump():
        for line in process.stdout:
            line = line.rstrip("\n")
            run.lines.append(line)
            print(line, flush=True)
            if line.startswith(READY_LINE):
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    started = time.monotonic()
    while not ready.wait(5):
        if time.monotonic() - started > RUN_TIMEOUT_S:
            run.stop()
            pytest.fail(f"kiln {command_name} did not reach serving within {RUN_TIMEOUT_S} s:\n{run.output[-3000:]}")
    return run


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as an endpoint's serve.tls_* files."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


def descendants(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [d for c in map(int, children) for d in (c, *descendants(c))]


def descendants_named(root: int, pattern: str) -> list[int]:
    """The processes under `root` (one this test or benchmark started, or itself) whose command line matches
    `pattern`: never a process by name alone, which could be anyone's on a shared machine."""
    found = []
    for pid in descendants(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone already
            continue
        if re.search(pattern, command):
            found.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited; only its parent has not read its status yet
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def outliving(pids: list[int], within_s: float = 30.0) -> list[int]:
    """Those of `pids` still alive after up to `within_s` seconds: a stopped process's children (Ray's raylet and
    workers among them) take a moment to exit, longer on a loaded machine, and a fixed wait made a clean stop
    look unclean."""
    deadline = time.monotonic() + within_s
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_with_children(pid: int) -> None:
    """SIGKILL the driver and the local Ray runtime it started, like a machine going down."""
    for member in [pid, *descendants(pid)]:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_mid_search(command: list[str], *, epochs: int, env: dict[str, str] | None = None, while_running=None) -> str:
    """Run a `kiln run` search until one trial has finished and the second is mid-way, then kill everything
    (calling `while_running()` first, while the search is alive). Returns what it printed."""
    driver = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    before = []
    for line in driver.stdout:
        before.append(line.rstrip())
        if any(f"finished {epochs} epochs" in seen for seen in before) and " epoch 1: " in line and "_00001" in line:
            if while_running is not None:
                while_running()
            kill_with_children(driver.pid)
            break
    driver.wait(60)
    assert driver.returncode == -signal.SIGKILL, "\n".join(before[-30:])
    return "\n".join(before)


def store_client(tracking_uri: str):
    """A client of one MLflow store for runs and registry both: mlflow's process-wide registry URI may still
    point at a store an earlier test used."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


S3_CREDENTIALS = {  # moto's server (the s3_endpoint fixture) takes any; pyarrow and boto need some
    "AWS_ACCESS_KEY_ID": "kiln-test",
    "AWS_SECRET_ACCESS_KEY": "kiln-test",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def bucket_uri(endpoint: str, path: str) -> str:
    return f"s3://kiln/{path}?endpoint_override={endpoint}&scheme=http&region=us-east-1&allow_bucket_creation=true"
