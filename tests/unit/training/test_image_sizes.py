"""Images train at any size and in colour: scikit-learn's digits written as image folders at 8-64 px, grey PNG
and colour JPEG, nearest and bilinear, through Kiln's own preprocessing, model and loop (training.local, no Ray).
Before the CNN pooled to a grid and batch-norm statistics were re-estimated, 32 px grey scored 0.47 and colour
JPEGs stayed at chance."""

from pathlib import Path

import pytest

from pipelines.config import KilnConfig
from pipelines.data import builtin, sources
from pipelines.training import local

# 32 px grey PNG goes through `kiln run` to the endpoint in tests/integration/test_image_folder_run.py, and every
# size in both colours in benchmarks/quality.py; these four keep 8-64 px, grey and colour, both resamplings here.
CASES = [
    (8, False, "nearest"),
    (16, True, "bilinear"),
    (32, True, "nearest"),
    (64, True, "bilinear"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "side, colour, resample", CASES, ids=[f"{s}px-{'rgb-jpg' if c else 'grey-png'}-{r}" for s, c, r in CASES]
)
def test_digits_images_train_to_095_at_any_size_and_in_colour(tmp_path: Path, side, colour, resample):
    root = builtin.write_digits(
        tmp_path / "digits", side=side, colour=colour, resample=resample, suffix=".jpg" if colour else ".png"
    )
    cfg = KilnConfig.model_validate({"data": {"source": str(root)}, "train": {"epochs": 10, "lr": 3e-3}})
    frame = sources.read_local(sources.resolve_source(cfg.data, tmp_path))
    fitted = local.fit(cfg, frame)
    assert fitted.test["test_accuracy"] >= 0.95, [round(e["val_accuracy"], 3) for e in fitted.epochs]
    assert fitted.val["val_accuracy"] >= 0.95
