"""`kiln run` killed hard while serving (SIGKILL, no chance to clean up): nothing it started keeps serve.port,
so the next endpoint on the same port answers. (Ray's HAProxy ingress used to outlive it and hold the port.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from tests_support import KILN, ROOT, free_port

pytestmark = pytest.mark.slow
NAME = "kiln-hard-kill"


def serve(root, port: int, command: list[str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            KILN,
            *command,
            "--set",
            f"storage.root={root / 'runs'}",
            "--set",
            f"serve.port={port}",
            "--set",
            f"registry.model_name={NAME}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in process.stdout:
        if line.startswith(("Endpoint:", "kiln: error")):  # printed once the endpoint answers
            assert line.startswith("Endpoint:"), line
            return process
    pytest.fail(f"kiln exited ({process.wait()}) before serving")


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_after_a_hard_kill_the_port_is_released_and_the_next_endpoint_answers(tmp_path):
    port = free_port()
    rows = [[0.0] * 64] * 3
    first = serve(
        tmp_path,
        port,
        [
            "run",
            "tests/configs/tiny.yaml",
            "--set",
            "tune.num_samples=1",
            "--set",
            "train.epochs=1",
            "--set",
            "tune.search_space={}",
            "--set",
            "train.num_workers=1",
        ],
    )
    assert requests.post(f"http://127.0.0.1:{port}/predict", json={"instances": rows}, timeout=30).status_code == 200
    first.send_signal(signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 30
    while not port_is_free(port):
        assert time.monotonic() < deadline, f"port {port} still held 30 s after kiln was killed"
        time.sleep(0.5)
    second = serve(tmp_path, port, ["serve", "--model", f"{NAME}@champion"])
    try:
        answer = requests.post(f"http://127.0.0.1:{port}/predict", json={"instances": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        second.send_signal(signal.SIGINT)
        second.communicate(timeout=120)  # reads what is left, so a full pipe never blocks its shutdown
