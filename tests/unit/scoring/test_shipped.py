"""A version shipped to kiln score's actors in memory is checked again before it loads: bytes changed on the way,
or a file name that leaves the actor's folder, are refused before any model is built."""

from __future__ import annotations

import pytest

from pipelines.tracking import integrity, mlflow_store

KEY = b"k" * 32


def shipped(files: dict[str, bytes], tmp_path) -> mlflow_store.Shipped:
    for relative, data in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(data)
    return mlflow_store.Shipped("m", 1, files, integrity.digest(tmp_path, KEY), "checkpoint")


def test_bytes_changed_on_the_way_are_refused(tmp_path):
    good = shipped({"checkpoint/weights.safetensors": b"weights", "MLmodel": b"flavors: {}"}, tmp_path)
    changed = mlflow_store.Shipped(
        "m", 1, {**good.files, "checkpoint/weights.safetensors": b"weightz"}, good.signature, "checkpoint"
    )
    with pytest.raises(integrity.IntegrityError, match="m v1: its files changed on the way"):
        mlflow_store.load_shipped(changed, key=KEY)
    with pytest.raises(integrity.IntegrityError, match="changed on the way"):  # another key
        mlflow_store.load_shipped(good, key=b"x" * 32)


def test_a_file_name_leaving_the_folder_is_refused(tmp_path):
    escaping = mlflow_store.Shipped("m", 1, {"../outside.txt": b"x"}, "0" * 64, "checkpoint")
    with pytest.raises(integrity.IntegrityError, match="outside its folder"):
        mlflow_store.load_shipped(escaping, key=KEY)
    assert not (tmp_path.parent / "outside.txt").exists()
