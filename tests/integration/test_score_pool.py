"""The Ray Data options `kiln score` runs under reach the dataset its actor pool maps. A Dataset keeps the context
it was made in: one made before the options were set read out of order, with the v2 reader, in 128 MiB blocks,
and the driver then numbered rows as they came, under the wrong numbers. The mixed-table test caught that only by
luck of timing; this checks the dataset itself, on Kiln's own runtime (nothing is executed)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.scoring import inputs, job
from pipelines.tracking.mlflow_store import Shipped

from tests_support import ROOT


@pytest.fixture(scope="module")
def kiln_runtime(tmp_path_factory):
    from pipelines.cluster import runtime
    from pipelines.config import load_config

    cfg = load_config(ROOT / "tests/configs/tiny.yaml", [f"storage.root={tmp_path_factory.mktemp('pool')}"])
    runtime.start(cfg)
    yield cfg
    runtime.stop()


@pytest.mark.parametrize("ordered", [True, False], ids=["file-output", "folder-output"])
def test_the_pools_dataset_reads_with_the_jobs_options(kiln_runtime, tmp_path, ordered):
    import ray.data

    table = tmp_path / "rows.parquet"
    pd.DataFrame({"x": range(300)}).to_parquet(table, row_group_size=100)
    given = inputs.open_input(kiln_runtime, str(table), {"x": "number"})
    shipped = Shipped(name="m", version=1, files={}, signature="", checkpoint="checkpoint")
    ray.data.DataContext.get_current().execution_options.preserve_order = not ordered  # a previous job's choice

    scored = job.pooled(kiln_runtime, lambda: inputs.dataset(given, 64), shipped, job.Scorer, (), ordered=ordered)

    context = scored.context
    assert context.execution_options.preserve_order is ordered  # a file output's rows in input order
    assert context.use_datasource_v2 is False  # the v1 reader: footers planned on the driver, no footer actors
    assert context.target_max_block_size == job.BLOCK_BYTES
