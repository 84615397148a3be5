"""stops: how long `kiln run` takes to stop on SIGINT and on SIGTERM in each stage, and what it leaves behind.

    .venv/bin/python benchmarks/stops.py [--stages ingest,search,evaluate,serving] [--signals INT,TERM]

Each case starts `kiln run configs/quickstart.yaml` (a small search) as a supervisor would: its own session,
SIGINT ignored (a non-interactive shell's `cmd &`), output on a pipe. When the stage's first line appears, the
signal goes to kiln alone. Measured: seconds from the signal to kiln's exit, its exit status (130 after SIGINT,
143 after SIGTERM), and processes of its session or its tree still alive 3 s later. Records `stop_time_max_s`,
`stop_exit_status_ok` and `stop_leftover_processes` in results.json. About 6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
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
from tests_support import KILN, alive, descendants, free_port, kill_with_children, supervised  # noqa: E402

STAGE_LINES = {  # the first line kiln prints in each stage
    "ingest": "» ingest",
    "search": "» search",
    "evaluate": "» evaluate",
    "serving": "Serving until Ctrl-C.",
}
SIGNALS = {"INT": (signal.SIGINT, 130), "TERM": (signal.SIGTERM, 143)}
SMALL = ["--set", "tune.num_samples=2", "--set", "train.epochs=4", "--set", "registry.model_name=stops-mlp"]
LIMIT_S = 300


def session_members(sid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def one_case(stage: str, signame: str, root: Path) -> dict:
    signum, expected = SIGNALS[signame]
    command = [KILN, "run", "configs/quickstart.yaml", "--set", f"storage.root={root}"]
    command += ["--set", f"serve.port={free_port()}", *SMALL]
    process = supervised(command)
    reached = threading.Event()
    lines: list[str] = []

    def pump():
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(STAGE_LINES[stage]):
                reached.set()
        reached.set()

    threading.Thread(target=pump, daemon=True).start()
    if not reached.wait(LIMIT_S) or process.poll() is not None:
        kill_with_children(process.pid)
        raise RuntimeError(f"kiln run never reached {stage}:\n" + "\n".join(lines[-30:]))
    members = set(descendants(process.pid)) | set(session_members(process.pid))
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        status = process.wait(LIMIT_S)
    except subprocess.TimeoutExpired:
        kill_with_children(process.pid)
        status = None
    seconds = time.monotonic() - sent
    time.sleep(3)
    left = sorted(p for p in members | set(session_members(process.pid)) if p != process.pid and alive(p))
    for pid in left:  # ours only: the members of this run's session and tree
        kill_with_children(pid)
    case = {
        "stage": stage,
        "signal": f"SIG{signame}",
        "seconds": round(seconds, 2),
        "exit_status": status,
        "expected": expected,
        "leftover_processes": len(left),
    }
    print(f"stops: SIG{signame} in {stage}: exit {status} after {seconds:.1f} s, {len(left)} left", flush=True)
    return case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGE_LINES))
    parser.add_argument("--signals", default="INT,TERM")
    args = parser.parse_args()
    cases = []
    with tempfile.TemporaryDirectory(prefix="kiln-stops-") as folder:
        for stage in args.stages.split(","):
            for signame in args.signals.split(","):
                cases.append(one_case(stage, signame, Path(folder) / f"{stage}-{signame}"))
    ok = sum(c["exit_status"] == c["expected"] for c in cases)
    record(
        [
            {
                "name": "stop_time_max_s",
                "value": max(c["seconds"] for c in cases),
                "unit": "s",
                "target": 10.0,
                "baseline": "SIGINT and SIGTERM to kiln alone (own session, SIGINT ignored) in each stage",
                "detail": {"cases": cases},
            },
            {"name": "stop_exit_status_ok", "value": f"{ok}/{len(cases)}", "unit": "cases", "target": "all"},
            {
                "name": "stop_leftover_processes",
                "value": sum(c["leftover_processes"] for c in cases),
                "unit": "processes",
                "target": 0,
            },
        ]
    )


if __name__ == "__main__":
    main()
