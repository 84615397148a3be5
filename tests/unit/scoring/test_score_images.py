"""`kiln score` over images, without Ray: a folder of images read as a table of file names, and each image that
does not decode, or names a file outside the input's folder, failing its own row with the reason."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.config import load_config
from pipelines.data.preprocessing import Encoder
from pipelines.errors import DataError
from pipelines.scoring import inputs, rows


def png(shade: int, side: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side), color=shade).save(buffer, format="PNG")
    return buffer.getvalue()


class Brightness:
    """A stand-in version of one image column: 'light' when the image's mean pixel is over 127. Only the model's
    own interface is used; the pixels are those the scorer decoded."""

    features = ["photo"]

    class preprocessing:  # noqa: N801
        types = {"photo": "image"}
        encoders = [Encoder(name="photo", type="image", size=4, channels=1)]
        regression = False
        labels = ["dark", "light"]

    def outputs(self, frame):
        light = np.array([0.5 if cell is None else float(cell.mean() > 127) for cell in frame["photo"]])
        return np.stack([1 - light, light], axis=1)

    def decode(self, outputs):
        return [self.preprocessing.labels[i] for i in outputs.argmax(axis=1)]


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "to-score"
    (root / "cats").mkdir(parents=True)
    (root / "b.png").write_bytes(png(250))
    (root / "cats" / "a.png").write_bytes(png(10))
    (root / "cats" / "broken.png").write_bytes(b"not an image at all")
    (root / ".thumbs").mkdir()
    (root / ".thumbs" / "hidden.png").write_bytes(png(0))
    (root / "._b.png").write_bytes(b"macOS metadata")
    (root / "notes.txt").write_text("not an image")
    (tmp_path / "secret.png").write_bytes(png(255))
    os.symlink(tmp_path / "secret.png", root / "link.png")
    return root


def test_an_image_folder_is_read_as_a_table_of_its_image_files_at_any_depth(folder):
    cfg = load_config("configs/quickstart.yaml", [f"storage.root={folder.parent / 'runs'}"])
    given = inputs.open_input(cfg, str(folder), {"photo": "image"})
    names = ["b.png", "cats/a.png", "cats/broken.png", "link.png"]  # sorted; hidden files and folders skipped
    assert given.listing[rows.PATH].tolist() == names and given.listing["photo"].tolist() == names
    assert given.rows == 4 and given.folder == str(folder.resolve())
    assert given.columns == [rows.PATH, "photo"]


def test_an_image_folder_needs_a_model_of_one_image_column_and_some_images(folder, tmp_path):
    cfg = load_config("configs/quickstart.yaml", [f"storage.root={tmp_path / 'runs'}"])
    with pytest.raises(
        DataError,
        match=r"--input .*: a folder of images is scored by a model of one image column; "
        r"this model reads photo \(image\), age \(number\)",
    ):
        inputs.open_input(cfg, str(folder), {"photo": "image", "age": "number"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .csv, .parquet or image files"):
        inputs.open_input(cfg, str(tmp_path / "empty"), {"photo": "image"})
    with pytest.raises(DataError, match=r"^--input: .*nowhere not found"):
        inputs.open_input(cfg, str(tmp_path / "nowhere"), {"photo": "image"})


def test_each_image_scores_or_fails_its_own_row_with_the_reason(folder):
    frame = pd.DataFrame(
        {
            "path": ["b.png", "cats/a.png", "cats/broken.png", "link.png", "../secret.png", "x", "y"],
            "photo": ["b.png", "cats/a.png", "cats/broken.png", "link.png", "../secret.png", png(200), None],
        }
    )
    out = rows.score_frame(Brightness(), frame, keep=["path"], probabilities=False, folder=str(folder.resolve()))
    assert out["path"].tolist() == frame["path"].tolist()  # every row once, in order
    assert out.loc[[0, 1, 5], "prediction"].tolist() == ["light", "dark", "light"]  # bytes cells score too
    assert out.loc[6, "error"] == ""  # a missing image is the mean image, as the endpoint takes it
    errors = out["error"].tolist()
    assert errors[2].startswith("column 'photo': not a PNG, JPEG or WebP image")
    assert "'link.png' is outside the table's folder" in errors[3]  # a symlink out of the folder
    assert "'../secret.png' is outside the table's folder" in errors[4]
    assert [bool(e) for e in errors] == [False, False, True, True, True, False, False]


def test_a_file_name_is_refused_when_the_input_has_no_local_folder():
    out = rows.score_frame(
        Brightness(), pd.DataFrame({"photo": ["a.png", png(0)]}), keep=[], probabilities=False, folder=None
    )
    assert out["error"].tolist() == ["column 'photo': a file name, but the input is not in a local folder", ""]
