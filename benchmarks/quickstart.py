"""quickstart: `kiln run configs/quickstart.yaml` from the command to the first successful prediction, split by
stage, and the peak memory of all its processes together (summed PSS, so shared pages count once). What a trial
costs outside its epochs is trial_cost.py's.

    .venv/bin/python benchmarks/quickstart.py [--runs 1] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import median, record

ROOT = Path(__file__).resolve().parent.parent
KILN = ROOT / ".venv" / "bin" / "kiln"
STAGE = re.compile(r"✓ (\w+)\s+([\d.]+) s")
SERVING = re.compile(r"serving \S+ v\d+.* at (http://\S+)")


def tree_pss_bytes(root_pid: int) -> int:
    """Summed proportional set size of `root_pid` and every process below it (Ray's raylet, GCS, workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, frontier = {root_pid}, [root_pid]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in family]
        family.update(children)
        frontier = children
    total = 0
    for pid in family:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def planned_search_s(overrides: list[str]) -> float:
    """`kiln plan`'s predicted wall time of the quickstart's search (calibrated on the spot)."""
    command = [str(KILN), "plan", "configs/quickstart.yaml", "--json", *[a for o in overrides for a in ("--set", o)]]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout[out.stdout.index("{") :])["search"]["wall_time_s"]


def one_run(root: str, port: int, overrides: list[str]) -> dict:
    command = [
        str(KILN),
        "run",
        "configs/quickstart.yaml",
        "--set",
        f"storage.root={root}",
        "--set",
        f"serve.port={port}",
        *[arg for o in overrides for arg in ("--set", o)],
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss_bytes(proc.pid))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stages, url, lines = {}, None, []
    try:
        for line in proc.stdout:
            lines.append(line)
            if m := STAGE.search(line):
                stages[m.group(1)] = float(m.group(2))
            if m := SERVING.search(line):
                url = m.group(1)
                break
        if url is None:
            raise RuntimeError("kiln run ended without serving:\n" + "".join(lines[-20:]))
        body = json.dumps({"instances": [[0.0] * 64]}).encode()
        while True:
            request = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        done.set()
        sampler.join()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    with sqlite3.connect(Path(root) / "mlflow.db") as db:
        startups = [v for (v,) in db.execute("select value from metrics where key = 'trial_startup_s'")]
        trials = db.execute("select count(*) from tags where key = 'kiln.kind' and value = 'trial'").fetchone()[0]
    return {
        "seconds": elapsed,
        "stages_s": stages,
        "trial_startup_s": startups,
        "trials": trials,
        "peak_pss_gib": peak[0] / 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--set", action="append", default=[], help="a config override, as for kiln run")
    args = parser.parse_args()
    runs = []
    predicted_search_s = planned_search_s(args.set)
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as root:
            runs.append(one_run(root, args.port, args.set))
    searches = [run["stages_s"]["search"] for run in runs]
    record(
        [
            {
                "name": "quickstart_s",
                "value": round(median([r["seconds"] for r in runs]), 1),
                "unit": "s",
                "target": 60,
                "baseline": "command to first successful prediction",
                "detail": {"runs": len(runs), "stages_s": runs[-1]["stages_s"], "trials": runs[-1]["trials"]},
            },
            {
                "name": "plan_search_error",
                "value": round(predicted_search_s / median(searches) - 1, 3),
                "unit": "relative error",
                "target": 0.3,
                "baseline": "the search stage's measured wall time",
                "detail": {"predicted_s": round(predicted_search_s, 1), "measured_s": median(searches)},
            },
            {
                "name": "peak_memory_gib",
                "value": round(max(r["peak_pss_gib"] for r in runs), 2),
                "unit": "GiB",
                "target": 4,
                "baseline": "summed PSS of kiln and every Ray process it started, sampled every 0.5 s",
            },
        ]
    )


if __name__ == "__main__":
    main()
