"""Image columns: the class-folder source, decoding and its errors, the fitted encoding, training-only shifts,
the CNN in the combiner, and what a request may send (pipelines/data/images.py, encoding, models, serving)."""

import base64
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipelines.config import DataConfig, ModelConfig
from pipelines.data import images, preprocessing, sources
from pipelines.data.preprocessing import Slot
from pipelines.errors import DataError
from pipelines.model import checkpoint
from pipelines.model.inference import InferenceModel
from pipelines.model.networks import augment, build_model, pixel_statistics, standardise
from serving.predictor import Predictor, RequestError


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def test_builtin_digits_images_is_a_class_folder_tree_read_as_image_and_label(tmp_path):
    cfg = DataConfig(source="builtin:digits-images")
    source = sources.resolve_source(cfg, tmp_path)
    assert source.format == "images" and sorted(
        p.name for p in (tmp_path / "datasets" / "digits-images").iterdir()
    ) == [str(d) for d in range(10)]
    checked = sources.inspect(cfg, tmp_path)
    assert checked.types == {"image": "image"} and len(checked.frame) == 1797
    assert sources.resolve_source(DataConfig(source=str(tmp_path / "datasets" / "digits-images")), tmp_path) == source
    with pytest.raises(DataError, match="an image folder's label column is 'label'"):
        sources.label_column(DataConfig(source="builtin:digits-images", label="digit"), tmp_path)


def test_hidden_folders_and_files_in_a_class_folder_tree_are_not_classes_or_images(tmp_path):
    for folder in ("cat", "dog", ".ipynb_checkpoints"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.png").write_bytes(png(np.zeros((4, 4))))
    (tmp_path / "cat" / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # what macOS copies beside
    assert images.class_folders(tmp_path) == [
        (str(tmp_path / "cat" / "a.png"), "cat"),
        (str(tmp_path / "dog" / "a.png"), "dog"),
    ]


def test_a_table_of_file_names_reads_them_beside_the_table(tmp_path):
    (tmp_path / "pics").mkdir()
    for i in range(4):
        (tmp_path / "pics" / f"{i}.png").write_bytes(png(np.full((6, 6), 60 * i)))
    pd.DataFrame({"photo": [f"pics/{i}.png" for i in range(4)] * 5, "label": list("abab") * 5}).to_csv(
        tmp_path / "table.csv", index=False
    )
    checked = sources.inspect(DataConfig(source=str(tmp_path / "table.csv")), tmp_path)
    assert checked.types == {"photo": "image"} and checked.frame["photo"][0] == str(tmp_path / "pics" / "0.png")
    assert sources.resolve_source(DataConfig(source=str(tmp_path)), tmp_path).format == "csv"  # not a class folder


def test_image_encoding_travels_as_json_and_standardises_with_train_statistics():
    cells = pd.Series([png(np.full((8, 8), v)) for v in (0, 128, 255)] + [None], dtype=object)
    encoder = preprocessing.fit_encoder("image", "image", cells, max_categories=5)
    assert (encoder.size, encoder.channels, encoder.width) == (8, 1, 64)
    encoded = encoder.encode(cells)
    assert encoded.dtype == np.uint8 and encoded.shape == (4, 1, 8, 8)  # pixels travel as bytes
    seen = standardised(encoder, encoded)  # the model's first step
    assert abs(seen[:3].mean()) < 1e-5 and np.allclose(seen[3], 0, atol=0.01)  # a missing image is the mean image
    again = preprocessing.Encoder(**json.loads(json.dumps(encoder.to_dict())))
    np.testing.assert_array_equal(again.encode(cells), encoded)
    colour = preprocessing.fit_encoder(
        "image", "image", pd.Series([png(np.zeros((40, 30, 3)))] * 3), max_categories=5, image_size=16
    )
    assert (colour.size, colour.channels) == (16, 3)


def test_each_channel_is_standardised_with_its_own_train_statistics():
    rng = np.random.default_rng(0)  # red bright and varied, green constant, blue dark
    cells = pd.Series(
        [
            png(np.stack([rng.integers(150, 255, (8, 8)), np.full((8, 8), 90), rng.integers(0, 40, (8, 8))], axis=-1))
            for _ in range(6)
        ],
        dtype=object,
    )
    encoder = preprocessing.fit_encoder("photo", "image", cells, max_categories=5)
    encoded = standardised(encoder, encoder.encode(cells)).reshape(6, 3, -1)
    np.testing.assert_allclose(encoded.mean(axis=(0, 2)), 0.0, atol=1e-5)  # every channel centred
    np.testing.assert_allclose(encoded[:, [0, 2]].std(axis=(0, 2)), 1.0, atol=1e-4)  # and scaled
    assert np.allclose(encoded[:, 1], 0.0, atol=1e-6) and encoder.channel_std[1] == 1.0  # constant: kept
    saved_before = {k: v for k, v in encoder.to_dict().items() if not k.startswith("channel_")}
    old = preprocessing.Encoder(**saved_before)  # a model saved before per-channel statistics still encodes
    assert old.encode(cells).shape == (6, 3, 8, 8)
    assert standardised(old, old.encode(cells)).max() <= 1.0  # one mean and std for all channels: 0 and 1


def test_a_cell_that_does_not_decode_names_its_column_row_and_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    encoder = preprocessing.Encoder("photo", "image", size=4, channels=1)
    with pytest.raises(images.ImageError, match=r"column 'photo' row 1 \(.*broken.png\): not a PNG, JPEG or WebP"):
        encoder.encode(pd.Series([png(np.zeros((4, 4))), str(bad)], dtype=object), allow_paths=True)
    with pytest.raises(images.ImageError, match="a file name where image bytes are expected"):
        encoder.encode(pd.Series([str(bad)], dtype=object))  # the pyfunc and requests never open files
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\n"
    with pytest.raises(images.ImageError, match="not a PNG, JPEG or WebP"):
        images.open_image(eps)  # formats PIL knows but Kiln does not take (EPS would run Ghostscript)
    with pytest.raises(images.ImageError, match="over 100 pixels"):
        images.open_image(png(np.zeros((20, 20))), max_pixels=100)


def standardised(encoder: preprocessing.Encoder, pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as the model's first step standardises them, with the encoder's train statistics."""
    slot = preprocessing.Preprocessing([encoder], []).slots[0]
    return standardise(torch.from_numpy(pixels), *pixel_statistics(slot)).numpy()


def test_shifts_move_each_image_within_its_side_and_leave_other_columns_alone():
    pixels = torch.randint(101, 256, (64, 1, 4, 4), dtype=torch.uint8)
    batch = {"x": torch.full((64, 3), 7.0), "image:i": pixels}  # 4x4 images beside 3 columns
    slots = [Slot("image", 0, 16, channels=1, size=4, column="i", mean=(0.2,), std=(0.1,))]
    shifted = augment(batch, slots, flip=False, generator=torch.Generator().manual_seed(0))
    assert shifted["x"] is batch["x"] and torch.equal(batch["image:i"], pixels)  # the given batch is unchanged
    moved = [not torch.equal(a, b) for a, b in zip(shifted["image:i"], pixels, strict=True)]
    assert 0 < sum(moved) < 64  # each image its own shift (some by zero)
    kept = shifted["image:i"]
    assert kept.dtype == torch.uint8
    assert ((kept == 51) | (kept > 100)).all()  # moved or padded with the mean pixel (0.2 * 255), never blended


def test_the_cnn_reads_uint8_image_columns_beside_numbers_and_standardises_them_itself():
    slots = [Slot("image", 1, 3 * 8 * 8, channels=3, size=8, column="i", mean=(0.5,) * 3, std=(0.25,) * 3)]
    model = build_model(
        ModelConfig(hidden=[8], image_channels=[4, 8]), input_dim=1 + 192 + 2, num_classes=3, slots=slots
    )
    pixels = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    assert model({"x": torch.randn(5, 3), "image:i": pixels}).shape == (5, 3)
    saved = list(model.state_dict())
    assert not any(k.endswith((".mean", ".std")) for k in saved), "statistics are not weights: checkpoint keys stay"


def predictor_of_images(folder, max_pixels: int = 10_000) -> Predictor:
    """A checkpoint of a 4x4 grey image classifier, as the endpoint loads one."""
    encoder = preprocessing.Encoder("image", "image", size=4, channels=1)
    prep = preprocessing.Preprocessing([encoder], ["a", "b"])
    model_cfg = ModelConfig(hidden=[4], image_channels=[4])
    model = build_model(model_cfg, input_dim=16, num_classes=2, slots=prep.slots)
    checkpoint.save(folder, model=model, optimizer=None, model_cfg=model_cfg, preprocessing=prep, epoch=1, metrics={})
    return Predictor(InferenceModel(folder), name="pics", version=1, max_image_pixels=max_pixels)


def test_a_request_sends_images_as_base64_and_never_as_a_path(tmp_path):
    predictor = predictor_of_images(tmp_path)
    good = {"b64": base64.b64encode(png(np.zeros((4, 4)))).decode()}
    assert len(predictor.predict([{"image": good}, [None]])["predictions"]) == 2
    for bad, message in [
        ("/etc/passwd", "expected an image as"),
        ({"b64": "!!"}, "b64 is not valid base64"),
        ({"b64": base64.b64encode(b"junk").decode()}, "not a PNG, JPEG or WebP"),
        ({"b64": base64.b64encode(png(np.zeros((200, 200)))).decode()}, "200x200 is over 10,000 pixels"),
    ]:
        with pytest.raises(RequestError, match=rf"instances\[1\]\[0\] \(image\): {message}"):
            predictor.rows([{"image": good}, {"image": bad}])


def test_v2_takes_base64_or_raw_image_bytes_within_the_configured_pixel_cap():
    import json as jsonlib

    from serving import v2

    small, large = png(np.zeros((4, 4))), png(np.zeros((200, 200)))

    def infer(data, cap):
        body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data}]}
        return v2.parse_infer(jsonlib.dumps(body).encode(), ["image"], types={"image": "image"}, max_image_pixels=cap)

    parsed = infer([base64.b64encode(small).decode(), None], 10_000)
    assert parsed.rows[0][0] == small and parsed.rows[1][0] is None
    with pytest.raises(v2.ProtocolError, match="input 'image' row 0: 200x200 is over 10,000 pixels"):
        infer([base64.b64encode(large).decode()], 10_000)
    assert infer([base64.b64encode(large).decode()], 50_000).rows[0][0] == large
    with pytest.raises(v2.ProtocolError, match="row 0: an image in JSON data is base64 text"):
        infer(["/etc/passwd"], 10_000)


def test_a_class_folder_refuses_a_fifo_named_like_an_image_and_follows_the_users_links(tmp_path):
    import os

    root = tmp_path / "set"
    for label in "ab":
        (root / label).mkdir(parents=True)
        (root / label / "0.png").write_bytes(png(np.zeros((4, 4))))
    (tmp_path / "elsewhere.png").write_bytes(png(np.zeros((4, 4))))
    os.symlink(tmp_path / "elsewhere.png", root / "a" / "1.png")  # the user's own folder: a link is theirs
    assert len(images.class_folders(root)) == 3
    os.mkfifo(root / "b" / "1.png")  # reading it would block ingest forever
    with pytest.raises(images.ImageError, match="1.png: not a regular file"):
        images.class_folders(root)


def test_one_requests_images_together_stay_within_serve_max_request_pixels(tmp_path):
    """A 10 MiB body of small-but-huge PNGs once held a replica for tens of seconds: the request's pixels in all
    are counted from each image's header, and the one that goes over is refused before it is decoded."""
    import json as jsonlib

    from serving import v2

    blank = png(np.zeros((300, 300)))  # 90,000 pixels in a few hundred bytes
    cell = {"b64": base64.b64encode(blank).decode()}
    predictor = predictor_of_images(tmp_path, max_pixels=100_000)
    predictor.max_request_pixels = 200_000
    assert len(predictor.rows([{"image": cell}] * 2)) == 2
    with pytest.raises(
        RequestError,
        match=r"instances\[2\]\[0\] \(image\): the request's images hold over 200,000 "
        r"pixels in all \(serve.max_request_pixels\)",
    ):
        predictor.rows([{"image": cell}] * 3)
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3], "data": [cell["b64"]] * 3}]}
    with pytest.raises(v2.ProtocolError, match="input 'image' row 2: the request's images hold over 200,000"):
        v2.parse_infer(
            jsonlib.dumps(body).encode(),
            ["image"],
            types={"image": "image"},
            max_image_pixels=100_000,
            max_request_pixels=200_000,
        )


def test_a_requests_images_are_decoded_once_on_either_protocol(tmp_path, monkeypatch):
    """Checking a request decoded each image and the forward pass decoded it again: the check now hands the
    model the pixels it decoded."""
    import json as jsonlib

    from serving import v2

    predictor = predictor_of_images(tmp_path)
    cell = base64.b64encode(png(np.full((8, 8), 255))).decode()
    opened = []
    real = images.open_image
    monkeypatch.setattr(images, "open_image", lambda *a, **k: opened.append(1) or real(*a, **k))

    answer = predictor.predict([{"image": {"b64": cell}}] * 3 + [[None]])
    assert len(answer["predictions"]) == 4 and len(opened) == 3

    opened.clear()
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3], "data": [cell] * 3}]}
    parsed = v2.parse_infer(
        jsonlib.dumps(body).encode(), ["image"], types={"image": "image"}, decode_image=predictor.decode_image
    )
    outputs = predictor.model.outputs(parsed.rows)
    assert len(outputs) == 3 and len(opened) == 3
    # the pixels the check decoded are the ones a fresh decode of the bytes gives
    bytes_frame = pd.DataFrame({"image": [base64.b64decode(cell)]}, dtype=object)
    assert np.allclose(predictor.model.outputs(bytes_frame), outputs[:1])
