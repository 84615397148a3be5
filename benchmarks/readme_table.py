"""Write the tables of docs/performance.md and docs/quality.md from benchmarks/results.json (between the markers).

.venv/bin/python benchmarks/readme_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- performance:begin -->", "<!-- performance:end -->"
PLAN_BEGIN, PLAN_END = "<!-- plan:begin -->", "<!-- plan:end -->"
QUALITY_BEGIN, QUALITY_END = "<!-- quality:begin -->", "<!-- quality:end -->"


def table(results: dict) -> str:
    lines = [
        f"Measured on: {results.get('machine', '?')}",
        "",
        "| figure | value | target | baseline |",
        "| --- | --- | --- | --- |",
    ]
    for figure in results.get("figures", []):
        target = "-" if figure.get("target") is None else figure["target"]
        lines.append(
            f"| `{figure['name']}` | {figure['value']} {figure.get('unit', '')} | {target} "
            f"| {figure.get('baseline', '-')} |"
        )
    return "\n".join(lines)


def plan_table(results: dict) -> str:
    """plan_accuracy's rows: predicted against measured epoch time per model and worker count."""
    rows = next((f["detail"] for f in results.get("figures", []) if f["name"] == "plan_epoch_error"), [])
    lines = ["| model | workers | predicted s | measured s | error |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {r['model']} | {r['workers']} | {r['predicted_s']:.3f} | {r['measured_s']:.3f} | {r['error']:+.1%} |"
        for r in rows
    ]
    return "\n".join(lines)


def quality_table(results: dict) -> str:
    """quality.py's rows: the network against the baseline on each public set, and the image folders."""
    rows = next(
        (f["detail"] for f in results.get("figures", []) if f["name"] == "quality_sets_at_or_above_baseline"), {}
    )
    lines = [
        "| set | metric | network | baseline | gap | within tolerance | registered (registry.candidates) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| {name} | - | failed: {row['error']} | - | - | - |")
            continue
        baseline = row.get("baseline", row.get("target", "-"))
        gap = f"{row['gap']:+.4f}" if "gap" in row else "-"
        lines.append(
            f"| {name} | test_{row['metric']} | {row['network']} | {baseline} | {gap} "
            f"| {'yes' if row.get('at_or_above') else 'no'} | {registered(row)} |"
        )
    return "\n".join(lines)


def registered(row: dict) -> str:
    """`blend 0.7827 (better than both)`: which candidate a run registered and its test score, judged against the
    better of network and baseline; `-` for rows from before candidates."""
    if "candidate" not in row:
        return "-"
    verdict = "better than both" if row["best"] else "as good" if row["as_good"] else "worse than the better one"
    return f"{row['candidate']} {row['registered']} ({verdict})"


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    before, found, rest = text.partition(begin)
    if not found:
        return text
    _, _, after = rest.partition(end)
    return f"{before}{begin}\n{body}\n{end}{after}"


def main() -> None:
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    performance, quality = ROOT / "docs" / "performance.md", ROOT / "docs" / "quality.md"
    text = replace_between(performance.read_text(), BEGIN, END, table(results))
    performance.write_text(replace_between(text, PLAN_BEGIN, PLAN_END, plan_table(results)))
    quality.write_text(replace_between(quality.read_text(), QUALITY_BEGIN, QUALITY_END, quality_table(results)))
    print(table(results))
    print(plan_table(results))


if __name__ == "__main__":
    main()
