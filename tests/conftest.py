from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's standalone S3-compatible server over real HTTP on 127.0.0.1, the nearest thing to S3 this machine
    has (tests_support.bucket_uri names a path in it); stopped by its pid."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    from pipelines.cluster.ports import free_port

    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    port = free_port()
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "the S3 server did not start"
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def root() -> Path:
    return ROOT


def pytest_configure(config):
    """The suite signs with a key of its own (as a team's KILN_SIGNING_KEY_FILE would), never the user's; every
    kiln subprocess a test starts inherits it."""
    import os
    import secrets
    import tempfile

    if os.environ.get("KILN_SIGNING_KEY_FILE"):
        return
    folder = tempfile.mkdtemp(prefix="kiln-test-key-")
    key = Path(folder) / "signing.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    os.environ["KILN_SIGNING_KEY_FILE"] = str(key)
    config._kiln_key_folder = folder


def pytest_unconfigure(config):
    import shutil

    folder = getattr(config, "_kiln_key_folder", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
