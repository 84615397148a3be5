"""The Open Inference Protocol's parsing and encoding (serving/v2.py): plain functions, no server."""

import json
import struct

import numpy as np
import pytest

from serving import v2
from serving.predictor import predict_batches
from serving.v2 import ProtocolError

FEATURES = ["a", "b", "c", "d"]
ROWS = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]


def body(*inputs, **extra) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def tensor(name="input-0", shape=(2, 4), datatype="FP64", data=ROWS, **extra) -> dict:
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data, **extra}


@pytest.mark.parametrize("data", [ROWS, [v for row in ROWS for v in row]], ids=["nested", "flat"])
@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_one_matrix_tensor_nested_or_flat(data, datatype):
    parsed = v2.parse_infer(body(tensor(data=data, datatype=datatype)), FEATURES)
    assert parsed.rows.dtype == np.float64 and parsed.rows.tolist() == ROWS
    assert parsed.request_id is None and parsed.binary_output is False


def test_integer_tensors_and_any_name():
    parsed = v2.parse_infer(
        body(tensor(name="features", datatype="INT64", data=[[1, 2, 3, 4]], shape=(1, 4))), FEATURES
    )
    assert parsed.rows.tolist() == [[1.0, 2.0, 3.0, 4.0]]


def test_columns_with_a_non_finite_value_name_the_feature():
    columns = [tensor(name=f, shape=(1,), data=[1e400 if f == "b" else 1.0]) for f in FEATURES]
    with pytest.raises(ProtocolError, match=r"input 'b' row 0: value must be finite"):
        v2.parse_infer(body(*columns), FEATURES)


def test_one_column_per_feature_in_any_order():
    columns = [tensor(name=f, shape=(2,), data=[ROWS[0][i], ROWS[1][i]]) for i, f in enumerate(FEATURES)]
    parsed = v2.parse_infer(body(*reversed(columns), id="req-7"), FEATURES)
    assert parsed.rows.tolist() == ROWS and parsed.request_id == "req-7"


def test_binary_tensor_extension_as_tritonclient_sends_it():
    raw = np.asarray(ROWS, dtype="<f4").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    parsed = v2.parse_infer(head + raw, FEATURES, header_length=str(len(head)))
    assert parsed.rows.tolist() == ROWS and parsed.binary_output is True


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (body(), "'inputs' must be a non-empty list"),
        (body(tensor(datatype="BOOL", data=[True] * 8)), "datatype 'BOOL' is not supported; use one of FP64"),
        (body(tensor(datatype="BYTES", data=["x"] * 8)), "a [N, 4] tensor takes numbers only"),
        (
            body(
                *[
                    tensor(name=f, shape=(1,), datatype="BYTES" if f == "a" else "FP64", data=["x" if f == "a" else 1])
                    for f in FEATURES
                ]
            ),
            "input 'a': a number column, got the string 'x'",
        ),
        (body(tensor(shape=(2, 3), data=[1] * 6)), "input 'input-0': expected shape [N, 4] with N >= 1"),
        (body(tensor(shape=(3, 4))), "input 'input-0': shape [3, 4] needs 12 values, got 8"),
        (body(tensor(data=[[1, 2, 3, "x"], [5, 6, 7, 8]])), "input 'input-0': data[3]: expected a number for FP64"),
        (body(tensor(data=[[1, 2, 3, True], [5, 6, 7, 8]])), "data[3]: expected a number for FP64, got True"),
        (body(tensor(datatype="INT32", data=[[1, 2, 3, 4.5], [5, 6, 7, 8]])), "data[3]: expected an integer"),
        (body(tensor(shape=(-1, 4))), "'shape' must be a list of non-negative integers"),
        (body(tensor(name="e", shape=(2,), data=[1, 2])), "unknown input 'e': send one tensor [N, 4]"),
        (body(*[tensor(name=f, shape=(1,), data=[1]) for f in "abc"]), "missing input for feature 'd'"),
        (
            body(*[tensor(name=f, shape=(1 + (f == "d"),), data=[1] * (1 + (f == "d"))) for f in FEATURES]),
            "feature tensors must have the same N",
        ),
        (body(tensor(), outputs=[{"name": "probabilities"}]), "unknown output 'probabilities'"),
        (body(tensor(), outputs=[{"name": "predictions", "parameters": {"classification": 2}}]), "classification"),
        (body({"shape": [1, 4]}), "inputs[0]: expected an object with 'name'"),
        (body({"name": "input-0", "shape": [1, 4], "datatype": "FP64"}), "no 'data'"),
    ],
)
def test_bad_requests_name_the_problem(payload, message):
    with pytest.raises(ProtocolError) as err:
        v2.parse_infer(payload, FEATURES)
    assert message in str(err.value)


def test_non_finite_values_name_row_and_feature():
    with pytest.raises(ProtocolError, match=r"input 'input-0' row 1 \(feature 'c'\): value must be finite"):
        v2.parse_infer(
            b'{"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", '
            b'"data": [1, 2, 3, 4, 5, 6, NaN, 8]}]}',
            FEATURES,
        )
    raw = np.asarray([[1, 2, 3, np.inf]], dtype="<f8").tobytes()
    head = json.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "parameters": {"binary_data_size": 32}}]}
    ).encode()
    with pytest.raises(ProtocolError, match=r"row 0 \(feature 'd'\): value must be finite"):
        v2.parse_infer(head + raw, FEATURES, header_length=str(len(head)))


@pytest.mark.parametrize(
    "header_length, size, message",
    [
        ("abc", 64, "must be an integer"),
        ("100000", 64, "does not fit a body"),
        (None, 60, "needs 64 bytes, got 60"),
        (None, 128, "does not fit the 64 bytes"),
    ],
)
def test_bad_binary_framing(header_length, size, message):
    raw = np.asarray(ROWS, dtype="<f8").tobytes()
    head = json.dumps(
        {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "parameters": {"binary_data_size": size}}]}
    ).encode()
    with pytest.raises(ProtocolError, match=message):
        v2.parse_infer(head + raw, FEATURES, header_length=header_length or str(len(head)))


def test_binary_bytes_left_over_are_refused():
    raw = np.asarray(ROWS, dtype="<f8").tobytes()
    head = json.dumps(
        {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "parameters": {"binary_data_size": 64}}]}
    ).encode()
    with pytest.raises(ProtocolError, match="binary data is 72 bytes"):
        v2.parse_infer(head + raw + b"12345678", FEATURES, header_length=str(len(head)))


@pytest.mark.parametrize(
    "labels, datatype",
    [
        (["high", "low"], "BYTES"),
        ([0, 1, 2], "INT64"),
        ([0.5, 1], "FP64"),
        ([False, True], "BOOL"),
        ([1, "x"], "BYTES"),
    ],
)
def test_output_datatype_follows_the_labels(labels, datatype):
    assert v2.output_datatype(labels) == datatype


def test_json_response_with_string_and_integer_labels():
    content, header_length = v2.infer_response(
        name="m", version=3, predictions=["high", "low"], datatype="BYTES", request_id="r1", binary=False
    )
    assert header_length is None
    assert json.loads(content) == {
        "model_name": "m",
        "model_version": "3",
        "id": "r1",
        "outputs": [{"name": "predictions", "datatype": "BYTES", "shape": [2], "data": ["high", "low"]}],
    }
    content, _ = v2.infer_response(
        name="m", version=3, predictions=[7, 1], datatype="INT64", request_id=None, binary=False
    )
    assert json.loads(content)["outputs"][0] == {
        "name": "predictions",
        "datatype": "INT64",
        "shape": [2],
        "data": [7, 1],
    }


def test_binary_response_bytes_and_int64():
    content, header_length = v2.infer_response(
        name="m", version=1, predictions=["high", "lo"], datatype="BYTES", request_id=None, binary=True
    )
    head, raw = json.loads(content[:header_length]), content[header_length:]
    assert head["outputs"][0]["parameters"] == {"binary_data_size": len(raw)}
    assert raw == struct.pack("<I", 4) + b"high" + struct.pack("<I", 2) + b"lo"
    content, header_length = v2.infer_response(
        name="m", version=1, predictions=[3, 4], datatype="INT64", request_id=None, binary=True
    )
    assert np.frombuffer(content[header_length:], dtype="<i8").tolist() == [3, 4]


MIXED = {"town": "category", "rooms": "number", "garage": "binary"}


def test_per_column_bytes_and_nulls_for_a_mixed_model_json_and_binary():
    columns = [
        tensor(name="garage", shape=(2,), datatype="BYTES", data=["yes", None]),
        tensor(name="town", shape=(2,), datatype="BYTES", data=["hills", "a town never seen"]),
        tensor(name="rooms", shape=(2,), datatype="INT64", data=[4, None]),
    ]
    parsed = v2.parse_infer(body(*columns), list(MIXED), types=MIXED)
    assert parsed.rows.dtype == object
    assert parsed.rows.tolist() == [["hills", 4, "yes"], ["a town never seen", None, None]]
    strings = [s.encode() for s in ("hills", "riverside")]
    raw = b"".join(struct.pack("<I", len(s)) + s for s in strings)
    binary = [
        {"name": "town", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}},
        tensor(name="rooms", shape=(2,), datatype="FP64", data=[2.0, 3.0]),
        tensor(name="garage", shape=(2,), datatype="BYTES", data=["no", "yes"]),
    ]
    head = body(*binary)
    parsed = v2.parse_infer(head + raw, list(MIXED), types=MIXED, header_length=str(len(head)))
    assert parsed.rows.tolist() == [["hills", 2.0, "no"], ["riverside", 3.0, "yes"]]
    with pytest.raises(ProtocolError, match="claims 9 bytes past the data's end"):
        short = struct.pack("<I", 9) + b"abc"
        spec = [{"name": "town", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(short)}}]
        v2.parse_infer(body(*spec) + short, ["town"], types={"town": "category"}, header_length=str(len(body(*spec))))


def test_a_mixed_models_metadata_lists_every_column_with_its_datatype():
    meta = v2.model_metadata("m", 1, list(MIXED), [], regression=True, types=MIXED)
    assert meta["inputs"] == [
        {"name": "town", "datatype": "BYTES", "shape": [-1]},
        {"name": "rooms", "datatype": "FP64", "shape": [-1]},
        {"name": "garage", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]


def test_model_metadata():
    meta = v2.model_metadata("m", 2, FEATURES, ["high", "low"])
    assert meta == {
        "name": "m",
        "versions": ["2"],
        "platform": "kiln_pytorch",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "predictions", "datatype": "BYTES", "shape": [-1]}],
    }


class Doubler:
    """Stands in for a Predictor in predict_batches: records each forward pass."""

    def __init__(self, tag):
        self.tag, self.calls = tag, []
        self.model = self

    def outputs(self, rows):
        self.calls.append(len(rows))
        return np.array([f"{self.tag}{int(r[0])}" for r in rows])


def test_a_batch_is_one_forward_pass_per_model_and_splits_back_in_order():
    old, new = Doubler("old"), Doubler("new")
    items = [(old, np.array([[1.0], [2.0]])), (new, np.array([[3.0]])), (old, np.array([[4.0]]))]
    assert [list(r) for r in predict_batches(items)] == [["old1", "old2"], ["new3"], ["old4"]]
    assert old.calls == [3] and new.calls == [1]


@pytest.mark.parametrize("shape", [[1073741824], [2**32, 2**32], [2**64], [0, 2**62]])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_claimed_shape_costs_no_more_than_the_bytes_sent(shape, binary):
    """The shape is the client's claim: a 118-byte request declaring [2**30] BYTES once held a replica for 20 s
    and 3.4 GiB; [2**64] or [2**32, 2**32] gave a 500. Each is one ProtocolError (a 400), answered at once."""
    import tracemalloc

    raw = struct.pack("<I", 1) + b"x"
    if binary:
        spec = [{"name": "town", "shape": shape, "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}]
        payload, header = body(*spec) + raw, str(len(body(*spec)))
    else:
        payload, header = body(tensor(name="town", shape=shape, datatype="BYTES", data=["x"])), None
    tracemalloc.start()
    with pytest.raises(ProtocolError, match="shape"):
        v2.parse_infer(payload, ["town"], types={"town": "category"}, header_length=header)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated for a {len(payload)}-byte request"
