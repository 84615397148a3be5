"""`kiln run` stopped mid-search the way a supervisor stops a service: started in a session of its own with SIGINT
ignored (as a non-interactive shell's `cmd &` leaves it), then SIGTERM to the kiln process alone. It must end
with 143, say how to resume, leave no process it started alive, and the search must resume to a model.
(Serving stops are checked where a run already serves: SIGINT to the group in test_quickstart, SIGTERM to kiln
alone in test_mixed_table, SIGINT to kiln alone with SIGINT ignored by its parent in test_regression_table.)"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from tests_support import KILN, ROOT, descendants, outliving, supervised

pytestmark = pytest.mark.slow

SEARCH = [
    "tests/configs/tiny.yaml",
    "--no-serve",
    "--set",
    "tune.num_samples=2",
    "--set",
    "tune.scheduler.name=fifo",
    "--set",
    'tune.search_space={"train.lr": {"choice": [0.003, 0.01]}}',
    "--set",
    "train.epochs=4",
    "--set",
    "registry.model_name=stops-test",
    "--set",
    "train.num_workers=1",
]


@pytest.fixture(scope="module")
def terminated(tmp_path_factory):
    root = tmp_path_factory.mktemp("stops") / "runs"
    command = [KILN, "run", *SEARCH, "--set", f"storage.root={root}"]
    driver = supervised(command)
    lines, members = [], []
    for line in driver.stdout:
        lines.append(line.rstrip())
        if " epoch 1: " in line:  # the first trial is training: the search is mid-way
            members = [driver.pid, *descendants(driver.pid)]
            driver.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            break
    else:
        pytest.fail(f"the search ended before a trial reported:\n{os.linesep.join(lines[-30:])}")
    try:
        rest, _ = driver.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        driver.kill()
        pytest.fail(f"kiln still running 120 s after SIGTERM:\n{os.linesep.join(lines[-30:])}")
    print(f"kiln run stopped {time.monotonic() - sent:.1f} s after SIGTERM mid-search")
    leftovers = outliving(members)
    output = "\n".join(lines) + "\n" + rest
    hint = re.search(r"continue it with: (kiln run .*--resume)$", output, re.M)
    assert hint, output[-3000:]
    again = [KILN, *shlex.split(hint.group(1))[1:], "--no-serve"]  # the command as printed
    resumed = subprocess.run(again, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return driver.returncode, output, members, leftovers, resumed


def test_sigterm_mid_search_exits_143_and_prints_the_command_that_resumes_it(terminated):
    code, output, *_ = terminated
    assert code == 143, output[-3000:]
    assert "interrupted; continue it with:" in output and "--resume" in output, output[-3000:]
    assert "sys.exit" not in output


def test_nothing_kiln_started_outlives_it(terminated):
    _, output, members, leftovers, _ = terminated
    assert len(members) > 1, "kiln started no runtime of its own"
    assert not leftovers, f"processes of the stopped run still alive: {leftovers}"


def test_the_stopped_search_resumes_to_a_registered_model(terminated):
    *_, resumed = terminated
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming search kiln-test-" in resumed.stdout
    assert "stops-test v1 registered" in resumed.stdout
