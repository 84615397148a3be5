"""One real `kiln run` (local Ray, SQLite MLflow, Ray Serve over HTTP) shared by the integration tests."""

import pytest

from tests_support import READY_LINE, start_run


@pytest.fixture(scope="session")
def live_run(tmp_path_factory):
    run = start_run("tests/configs/tiny.yaml", tmp_path_factory.mktemp("kiln-run"))
    if run.process.poll() is not None and READY_LINE not in run.output:
        pytest.fail(f"kiln run exited with {run.process.returncode}:\n{run.output[-3000:]}")
    yield run
    run.stop()
