"""The baseline's trees as a version keeps them, predicted two ways side by side in one run: scikit-learn's compiled
walk rebuilt from the checked arrays (what a batch of 64 rows or more takes) against the numpy walk (what fewer
rows take), with the fitted estimator's own predict as the reference, on one thread and on every core.

Fits scikit-learn's HistGradientBoostingClassifier as Kiln's baseline fits it, on 20,000 generated `customers` rows
(string categories, gaps), exports it to arrays and times the raw outputs of batches of 4,096 rows and of 1 row.

    .venv/bin/python benchmarks/trees.py
"""

from __future__ import annotations

import os
import time

from common import median, record

REPEATS = 7


def timed(predict, x, repeats: int = REPEATS) -> float:
    """The median seconds of one call, after one warm call."""
    predict(x)
    laps = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(x)
        laps.append(time.perf_counter() - started)
    return median(laps)


def measure(kept, estimator, x, encoded) -> dict[str, float]:
    return {
        "compiled_4096_ms": 1e3 * timed(kept.compiled_raw, encoded),
        "numpy_4096_ms": 1e3 * timed(kept.walked_raw, encoded),
        "sklearn_4096_ms": 1e3 * timed(estimator._raw_predict, x),
        "compiled_1_ms": 1e3 * timed(kept.compiled_raw, encoded[:1], 200),
        "numpy_1_ms": 1e3 * timed(kept.walked_raw, encoded[:1], 200),
    }


def main() -> None:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from pipelines.data import builtin
    from pipelines.model import baseline, baseline_files, trees

    frame = builtin.customers(rows=24_096, seed=1)
    label = frame.pop("churned").to_numpy()
    types = {c: "number" if frame[c].dtype.kind in "fi" else "category" for c in frame if c != "customer_id"}
    train, held = frame.iloc[:20_000], frame.iloc[20_000:]
    fitted = baseline.fit(train, label[:20_000], types)
    kept = trees.Trees(trees.export(fitted.model))
    x = baseline_files.tree_matrix(held, types, fitted.categories)
    encoded = kept.encoded(x)
    assert np.allclose(kept.compiled_raw(encoded), fitted.model._raw_predict(x), atol=1e-9)
    assert np.allclose(kept.walked_raw(encoded), fitted.model._raw_predict(x), atol=1e-9)

    cores = os.cpu_count() or 1
    figures = {}
    for threads in sorted({1, cores}):
        with threadpool_limits(limits=threads, user_api="openmp"):  # what scikit-learn's thread count reads
            figures[threads] = measure(kept, fitted.model, x, encoded)
        print(threads, "thread(s):", {k: round(v, 3) for k, v in figures[threads].items()}, flush=True)
    one, every = figures[1], figures[cores]
    base = (
        f"{len(kept.arrays['roots'])} trees (depth up to {int(kept.arrays['depth'][0])}) fitted on 20,000 generated "
        f"customers rows, batches of 4,096"
    )
    detail = {str(k): {name: round(v, 3) for name, v in values.items()} for k, values in figures.items()}
    record(
        [
            {"name": "trees_compiled_vs_numpy_speedup_4096", "value": round(one["numpy_4096_ms"] /
             one["compiled_4096_ms"], 2), "unit": "x", "target": None,
             "baseline": f"the numpy walk, one thread; {base}", "detail": detail},
            {"name": "trees_compiled_vs_sklearn_4096", "value": round(every["sklearn_4096_ms"] /
             every["compiled_4096_ms"], 2), "unit": "x", "target": None,
             "baseline": f"the fitted estimator's own predict, {cores} threads; {base}"},
            {"name": "trees_numpy_vs_compiled_speedup_1_row", "value": round(one["compiled_1_ms"] /
             one["numpy_1_ms"], 2), "unit": "x", "target": None,
             "baseline": f"the compiled walk on one row (why fewer than 64 rows walk in numpy); {base}"},
        ]
    )  # fmt: skip


if __name__ == "__main__":
    main()
