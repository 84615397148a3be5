from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
