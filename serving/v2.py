"""The Open Inference Protocol (KServe v2, what Triton speaks) as plain functions. No Ray, no HTTP server.

Inputs: one tensor [N, num_features] (any name, e.g. "input-0"), or one 1-D tensor [N] per feature name (the
pandas-codec convention MLServer uses): BYTES for a category or binary column's strings, a number type for a
number column; in JSON data a null is a missing cell (imputed as in training). Data as JSON (flat row-major or
nested) or as Triton's binary tensor extension, which is what `tritonclient` sends by default (BYTES there:
each element a 4-byte little-endian length, then its bytes). Output: one tensor "predictions" [N] in the
label's own type (FP64 for a regression).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.data import images

# An image column's checked bytes -> the pixels its model reads: (feature, bytes, the request's pixel budget).
DecodeImage = Callable[[str, bytes, "images.PixelBudget | None"], np.ndarray]
HEADER_LENGTH = "inference-header-content-length"
"""Triton's binary extension: the JSON part is this many bytes; raw tensor bytes follow."""
OUTPUT = "predictions"
MATRIX_INPUT = "input-0"
PLATFORM = "kiln_pytorch"
DATATYPES = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4"), "INT64": np.dtype("<i8"), "INT32": np.dtype("<i4")}
BYTES = "BYTES"
# A tensor's shape is the client's claim: it is checked against the bytes or values that came with it before
# anything is allocated, so a request costs the server no more than its size. Each dimension must also fit
# numpy's (and Triton's) 32-bit-safe range, or reshaping an empty tensor fails.
MAX_DIMENSION = 2**31 - 1
INPUT_DATATYPES = (*DATATYPES, BYTES)
_OUTPUT_DTYPES = {"INT64": np.dtype("<i8"), "FP64": np.dtype("<f8"), "BOOL": np.dtype("?")}


class ProtocolError(ValueError):
    """A request the protocol cannot accept: HTTP 400 with {"error": message}."""


@dataclass(frozen=True)
class InferRequest:
    rows: np.ndarray
    """[N, num_features] in training feature order: float64, or object when a column holds strings or nulls."""
    request_id: str | None
    binary_output: bool


def output_datatype(labels: list[Any], *, regression: bool = False) -> str:
    """INT64 for integer labels, BYTES for strings (and anything mixed), FP64 / BOOL where labels are those;
    FP64 for a regression."""
    if regression:
        return "FP64"
    if labels and all(isinstance(v, bool) for v in labels):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels):
        return "FP64"
    return "BYTES"


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "kiln", "version": version, "extensions": ["binary_tensor_data"]}


def model_metadata(
    name: str,
    version: int,
    features: list[str],
    labels: list[Any],
    *,
    regression: bool = False,
    types: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An all-numeric model lists its one matrix input; a model with category or binary columns lists one
    input per column with its datatype (BYTES for strings)."""
    if types and any(kind != "number" for kind in types.values()):
        inputs = [{"name": f, "datatype": "FP64" if types[f] == "number" else BYTES, "shape": [-1]} for f in features]
    else:
        inputs = [{"name": MATRIX_INPUT, "datatype": "FP64", "shape": [-1, len(features)]}]
    return {
        "name": name,
        "versions": [str(version)],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": [{"name": OUTPUT, "datatype": output_datatype(labels, regression=regression), "shape": [-1]}],
    }


def error(message: str) -> dict[str, str]:
    return {"error": message}


def parse_infer(
    body: bytes,
    features: list[str],
    *,
    header_length: str | None = None,
    types: dict[str, str] | None = None,
    max_image_pixels: int = images.DEFAULT_MAX_PIXELS,
    max_request_pixels: int = 64_000_000,
    decode_image: DecodeImage | None = None,
) -> InferRequest:
    """Validate an infer request against the model's features (and their `types`: a number column takes numbers
    only; an image column's images decode within `max_image_pixels`, by `decode_image` into the pixels the model
    reads where it is given, so each image decodes once); every message names the input, row or feature."""
    head, binary = _split(body, header_length)
    try:
        request = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"request body is not valid JSON: {err}") from None
    except RecursionError:
        raise ProtocolError("request body is nested too deeply") from None
    if not isinstance(request, dict):
        raise ProtocolError("request body must be a JSON object with an 'inputs' list")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("'inputs' must be a non-empty list of tensors")
    tensors, offset = [], 0
    for i, spec in enumerate(inputs):
        name, array, offset = _tensor(spec, i, binary, offset)
        tensors.append((name, array))
    if offset != len(binary):
        raise ProtocolError(f"binary data is {len(binary)} bytes but the inputs' binary_data_size add up to {offset}")
    if len(tensors) == 1 and tensors[0][1].ndim == 2:
        rows = _matrix(*tensors[0], features)
    else:
        rows = _columns(
            tensors,
            features,
            types or dict.fromkeys(features, "number"),
            max_image_pixels,
            images.PixelBudget(max_request_pixels),
            decode_image,
        )
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    return InferRequest(rows, request_id, _binary_output(request))


def infer_response(
    *, name: str, version: int, predictions: list[Any], datatype: str, request_id: str | None, binary: bool
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when the output travels as binary (else None)."""
    output: dict[str, Any] = {"name": OUTPUT, "datatype": datatype, "shape": [len(predictions)]}
    response: dict[str, Any] = {"model_name": name, "model_version": str(version), "outputs": [output]}
    if request_id is not None:
        response["id"] = request_id
    if not binary:
        output["data"] = [str(p) for p in predictions] if datatype == "BYTES" else predictions
        return json.dumps(response).encode(), None
    if datatype == "BYTES":
        items = [str(p).encode() for p in predictions]
        raw = b"".join(struct.pack("<I", len(item)) + item for item in items)
    else:
        raw = np.asarray(predictions, dtype=_OUTPUT_DTYPES[datatype]).tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(response).encode()
    return head + raw, len(head)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise ProtocolError(f"Inference-Header-Content-Length must be an integer (got {header_length!r})") from None
    if not 0 < length <= len(body):
        raise ProtocolError(f"Inference-Header-Content-Length {length} does not fit a body of {len(body)} bytes")
    return body[:length], body[length:]


def _tensor(spec: Any, index: int, binary: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ProtocolError(f"inputs[{index}]: expected an object with 'name', 'shape', 'datatype' and 'data'")
    name = spec["name"]
    shape, datatype = spec.get("shape"), spec.get("datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"input {name!r}: 'shape' must be a list of non-negative integers (got {shape!r})")
    if datatype not in INPUT_DATATYPES:
        raise ProtocolError(
            f"input {name!r}: datatype {datatype!r} is not supported; use one of {', '.join(INPUT_DATATYPES)}"
        )
    count = math.prod(shape)  # Python's integers: no overflow to a small or negative count
    if any(d > MAX_DIMENSION for d in shape):
        raise ProtocolError(f"input {name!r}: shape {shape} has a dimension over {MAX_DIMENSION}")
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"input {name!r}: 'parameters' must be an object")
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise ProtocolError(
                f"input {name!r}: binary_data_size {size!r} does not fit the {len(binary)} bytes after the JSON header"
            )
        if datatype == BYTES:
            if count * 4 > size:  # before allocating anything: every element carries a 4-byte length
                raise ProtocolError(
                    f"input {name!r}: shape {shape} of BYTES needs at least {count * 4} bytes "
                    f"(a 4-byte length per element), got {size}"
                )
            return name, _binary_strings(name, binary[offset : offset + size], count).reshape(shape), offset + size
        if size != count * DATATYPES[datatype].itemsize:
            raise ProtocolError(
                f"input {name!r}: shape {shape} of {datatype} needs "
                f"{count * DATATYPES[datatype].itemsize} bytes, got {size}"
            )
        flat = np.frombuffer(binary, dtype=DATATYPES[datatype], count=count, offset=offset)
        return name, flat.astype(np.float64).reshape(shape), offset + size
    if "data" not in spec:
        raise ProtocolError(f"input {name!r}: no 'data' (and no binary_data_size parameter)")
    try:
        values = list(_leaves(spec["data"]))
    except RecursionError:
        raise ProtocolError(f"input {name!r}: 'data' is nested too deeply") from None
    integer = datatype.startswith("INT")
    for k, value in enumerate(values):
        if value is None:  # a missing cell
            continue
        if datatype == BYTES:
            if not isinstance(value, str):
                raise ProtocolError(f"input {name!r}: data[{k}]: expected a string for BYTES, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int if integer else int | float):
            kind = "an integer" if integer else "a number"
            raise ProtocolError(f"input {name!r}: data[{k}]: expected {kind} for {datatype}, got {value!r}")
    if len(values) != count:
        raise ProtocolError(f"input {name!r}: shape {shape} needs {count} values, got {len(values)}")
    if datatype == BYTES or any(v is None for v in values):
        array = np.empty(count, dtype=object)
        array[:] = values
        return name, array.reshape(shape), offset
    return name, np.asarray(values, dtype=np.float64).reshape(shape), offset


def _binary_strings(name: str, raw: bytes, count: int) -> np.ndarray:
    """Triton's BYTES serialisation: each element a uint32 little-endian length, then that many UTF-8 bytes."""
    out, at = np.empty(count, dtype=object), 0
    for k in range(count):
        if at + 4 > len(raw):
            raise ProtocolError(f"input {name!r}: binary BYTES data ends before element {k} of {count}")
        (length,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + length > len(raw):
            raise ProtocolError(f"input {name!r}: binary BYTES element {k} claims {length} bytes past the data's end")
        try:
            out[k] = raw[at : at + length].decode("utf-8")
        except UnicodeDecodeError:  # an image's raw bytes; anything else is refused by _columns
            out[k] = bytes(raw[at : at + length])
        at += length
    if at != len(raw):
        raise ProtocolError(f"input {name!r}: {len(raw) - at} bytes left after {count} BYTES elements")
    return out


def _leaves(data: Any):
    """Flat or nested (row-major) data, as one flat sequence."""
    if isinstance(data, list):
        for item in data:
            yield from _leaves(item)
    else:
        yield data


def _matrix(name: str, array: np.ndarray, features: list[str]) -> np.ndarray:
    if array.shape[1] != len(features) or array.shape[0] == 0:
        raise ProtocolError(
            f"input {name!r}: expected shape [N, {len(features)}] with N >= 1 "
            f"(features {', '.join(features)}), got {list(array.shape)}"
        )
    if array.dtype == object:
        raise ProtocolError(
            f"input {name!r}: a [N, {len(features)}] tensor takes numbers only; send strings and "
            "missing cells as one 1-D tensor per feature"
        )
    _finite(array, lambda i, j: f"input {name!r} row {i} (feature {features[j]!r})")
    return array


def _columns(
    tensors: list[tuple[str, np.ndarray]],
    features: list[str],
    types: dict[str, str],
    max_image_pixels: int = images.DEFAULT_MAX_PIXELS,
    budget: images.PixelBudget | None = None,
    decode_image: DecodeImage | None = None,
) -> np.ndarray:
    by_name: dict[str, np.ndarray] = {}
    for name, array in tensors:
        if name not in features:
            raise ProtocolError(
                f"unknown input {name!r}: send one tensor [N, {len(features)}] or one 1-D tensor "
                f"per feature ({', '.join(features)})"
            )
        if name in by_name:
            raise ProtocolError(f"input {name!r} appears twice")
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ProtocolError(f"input {name!r}: a feature tensor must have shape [N], got {list(array.shape)}")
        by_name[name] = array
    missing = [f for f in features if f not in by_name]
    if missing:
        raise ProtocolError(f"missing input for feature {missing[0]!r}")
    lengths = {name: len(array) for name, array in by_name.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ProtocolError(f"feature tensors must have the same N >= 1 rows (got {lengths})")
    for f in features:
        if types.get(f) == "image":
            cells = np.empty(len(by_name[f]), dtype=object)  # each cell one image (np.array would stack pixels)
            for i, v in enumerate(by_name[f]):
                cells[i] = _image(v, f, i, max_image_pixels, budget, decode_image)
            by_name[f] = cells
            continue
        undecodable = [i for i, v in enumerate(by_name[f]) if isinstance(v, bytes)]
        if undecodable:
            raise ProtocolError(f"input {f!r}: binary BYTES element {undecodable[0]} is not UTF-8")
        if types.get(f) == "number" and by_name[f].dtype == object:
            strings = [v for v in by_name[f] if isinstance(v, str)]
            if strings:
                raise ProtocolError(f"input {f!r}: a number column, got the string {strings[0]!r}")
    if all(array.dtype != object for array in by_name.values()):
        rows = np.stack([by_name[f] for f in features], axis=1)
        _finite(rows, lambda i, j: f"input {features[j]!r} row {i}")
        return rows
    rows = np.empty((lengths[features[0]], len(features)), dtype=object)
    for j, f in enumerate(features):
        rows[:, j] = by_name[f]
        if types.get(f) == "number":
            present = np.array([v for v in by_name[f] if v is not None], dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(present))
            if len(bad):
                raise ProtocolError(f"input {f!r}: value must be finite")
    return rows


def _image(
    value: Any,
    name: str,
    row: int,
    max_pixels: int,
    budget: images.PixelBudget | None,
    decode_image: DecodeImage | None = None,
) -> bytes | np.ndarray | None:
    """An image column's element: raw bytes (the binary extension), base64 in JSON, or null (a missing image).
    Checked, it is `decode_image`'s pixels where that is given, else the bytes."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"input {name!r} row {row}: an image in JSON data is base64 text") from None
    if not isinstance(value, bytes):
        raise ProtocolError(f"input {name!r} row {row}: expected image bytes, got {value!r}")
    try:
        if decode_image is not None:
            return decode_image(name, value, budget)
        images.open_image(value, max_pixels=max_pixels, budget=budget)
    except images.ImageError as err:
        raise ProtocolError(f"input {name!r} row {row}: {err}") from None
    return value


def _finite(rows: np.ndarray, where) -> None:
    bad = np.argwhere(~np.isfinite(rows))
    if len(bad):
        raise ProtocolError(f"{where(*bad[0])}: value must be finite")


def _binary_output(request: dict[str, Any]) -> bool:
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("'parameters' must be an object")
    outputs = request.get("outputs")
    if outputs is None:
        return bool(parameters.get("binary_data_output", False))
    if not isinstance(outputs, list) or not outputs:
        raise ProtocolError("'outputs' must be a non-empty list when given")
    binary = False
    for spec in outputs:
        if not isinstance(spec, dict) or spec.get("name") != OUTPUT:
            got = spec.get("name") if isinstance(spec, dict) else spec
            raise ProtocolError(f"unknown output {got!r}; this model has one output {OUTPUT!r}")
        wanted = spec.get("parameters") or {}
        if not isinstance(wanted, dict):
            raise ProtocolError(f"output {OUTPUT!r}: 'parameters' must be an object")
        if "classification" in wanted or "shared_memory_region" in wanted:
            raise ProtocolError(f"output {OUTPUT!r}: the classification and shared-memory extensions are not supported")
        binary = bool(wanted.get("binary_data", parameters.get("binary_data_output", False)))
    return binary
