"""number_encodings: how a number column should reach the network (data.numbers), on the public tables of
benchmarks/quality_sets.py. One fixed config per table (no search, so the encoding is the only difference),
trained in this process by Kiln's own preprocessing and loop (pipelines/training/local.py), over a few seeds;
each encoding's median test metric beside the baseline's.

    .venv/bin/python benchmarks/number_encodings.py [--encodings standard,quantile,ple] [--seeds 3]
                                                    [--sets ames,randhie] [--set KEY=VALUE ...]

Figure: number_encoding_wins (per encoding, the tables where its median is the best of those compared; a tie goes
to the encoding listed first).
"""

from __future__ import annotations

import argparse
import statistics

import quality_sets

from pipelines import config
from pipelines.training import local

from common import pin_threads, record

TABLES = [name for name in quality_sets.SETS if name not in ("airline_tweets", "fine_foods")]
RECIPE = ["train.epochs=30", "train.lr=3e-3", "train.num_workers=1"]


def score(name: str, numbers: str, seed: int, extra: list[str]) -> tuple[str, float]:
    frame, label, drop = quality_sets.SETS[name]()
    cfg = config.load_config(
        None,
        [
            f"data.label={label}",
            f"data.drop={drop}",
            "data.source=table.csv",
            *RECIPE,
            f"train.seed={seed}",
            f"data.numbers={numbers}",
            *extra,
        ],
    )
    test = local.fit(cfg, frame).test
    metric = "test_accuracy" if "test_accuracy" in test else "test_rmse"
    return metric, test[metric]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encodings", default="standard,quantile,ple")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", default=",".join(TABLES))
    parser.add_argument("--set", action="append", default=[], dest="extra")
    args = parser.parse_args()
    pin_threads(1)
    encodings = args.encodings.split(",")
    detail, wins = {}, dict.fromkeys(encodings, 0)
    for name in args.sets.split(","):
        row = {}
        for numbers in encodings:
            scores = [score(name, numbers, seed, args.extra) for seed in range(args.seeds)]
            row["metric"] = scores[0][0]
            row[numbers] = round(statistics.median(s for _, s in scores), 4)
        better = max if row["metric"] == "test_accuracy" else min
        best = better(encodings, key=lambda e: row[e])
        wins[best] += 1
        detail[name] = row
        print(name, row, f"best: {best}", flush=True)
    summary = ", ".join(f"{encoding} {count}" for encoding, count in wins.items())
    record(
        [
            {
                "name": "number_encoding_wins",
                "value": summary,
                "unit": f"tables (of {len(detail)}) where the encoding's median over {args.seeds} seeds is best",
                "detail": detail,
                "config": RECIPE + args.extra,
            }
        ]
    )


if __name__ == "__main__":
    main()
