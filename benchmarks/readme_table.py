"""Write the README's Performance table from benchmarks/results.json (between the marker comments).

    .venv/bin/python benchmarks/readme_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- performance:begin -->", "<!-- performance:end -->"


def table(results: dict) -> str:
    lines = [f"Measured on: {results.get('machine', '?')}", "",
             "| figure | value | target | baseline |", "| --- | --- | --- | --- |"]
    for figure in results.get("figures", []):
        lines.append(f"| `{figure['name']}` | {figure['value']} {figure.get('unit', '')} | {figure.get('target', '-')} "
                     f"| {figure.get('baseline', '-')} |")
    return "\n".join(lines)


def main() -> None:
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    readme = ROOT / "README.md"
    text = readme.read_text()
    before, _, rest = text.partition(BEGIN)
    _, _, after = rest.partition(END)
    readme.write_text(f"{before}{BEGIN}\n{table(results)}\n{END}{after}")
    print(table(results))


if __name__ == "__main__":
    main()
