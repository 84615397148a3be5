"""The endpoint's routes and limits over real HTTP (uvicorn in a thread), without Ray: a stand-in endpoint
holds a real Predictor and forwards each request on its own."""

import asyncio
import contextlib
import json
import socket
import threading
import time

import pytest
import requests
import uvicorn

from pipelines.model.inference import InferenceModel
from serving.metrics import Metrics
from serving.predictor import Predictor, predict_batches
from serving.routes import build_api

MAX_BODY_BYTES = 4096
TIMEOUT_S = 1.0
JSON = {"Content-Type": "application/json"}


class StandIn:
    source = "models:/tiny@champion"

    def __init__(self, predictor: Predictor):
        self.predictor, self.metrics, self.delay_s = predictor, Metrics(model="tiny", replica="r1"), 0.0

    async def forward(self, item):
        await asyncio.sleep(self.delay_s)
        self.metrics.observe_batch(requests=1, rows=len(item[1]))
        return predict_batches([item])[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tiny_model import train_tiny

    folder = tmp_path_factory.mktemp("tiny")
    frame = train_tiny(folder)
    endpoint = StandIn(Predictor(InferenceModel(folder), name="tiny", version=1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            build_api(endpoint, max_body_bytes=MAX_BODY_BYTES, timeout_s=TIMEOUT_S),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", endpoint, frame
    server.should_exit = True
    thread.join(10)


def rows(frame, n=2):
    return frame[["a", "b", "c", "d"]].head(n).to_numpy().tolist()


def test_predict_carries_the_version_in_body_and_header(served):
    url, _, frame = served
    answer = requests.post(f"{url}/predict", json={"instances": rows(frame)}, timeout=10)
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
    assert answer.json() == {"predictions": frame["label"].head(2).tolist(), "model": "tiny", "version": 1}


def test_bad_rows_422_and_v2_errors_400(served):
    url, _, frame = served
    bad = requests.post(f"{url}/predict", json={"instances": [[1, 2, 3]]}, timeout=10)
    assert bad.status_code == 422 and bad.json()["detail"] == "instances[0]: expected 4 features, got 3"
    assert bad.headers["X-Model-Version"] == "1"
    bad = requests.post(f"{url}/v2/models/tiny/infer", data=b"{oops", headers=JSON, timeout=10)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    missing = requests.post(f"{url}/v2/models/other/infer", json={"inputs": []}, timeout=10)
    assert missing.status_code == 404 and "unknown model 'other'" in missing.json()["error"]
    old = requests.get(f"{url}/v2/models/tiny/versions/7", timeout=10)
    assert old.status_code == 404 and "version '7' of 'tiny' is not loaded" in old.json()["error"]


def test_v2_infer_json_columns(served):
    url, _, frame = served
    head = frame.head(3)
    inputs = [{"name": f, "shape": [3], "datatype": "FP64", "data": head[f].tolist()} for f in "abcd"]
    answer = requests.post(f"{url}/v2/models/tiny/versions/1/infer", json={"id": "x", "inputs": inputs}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == [
        {"name": "predictions", "datatype": "BYTES", "shape": [3], "data": head["label"].tolist()}
    ]
    assert answer.json()["id"] == "x"


def test_body_over_the_limit_413_by_header_and_by_stream(served):
    url, _, frame = served
    big = json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]] * 400}).encode()
    assert len(big) > MAX_BODY_BYTES
    answer = requests.post(f"{url}/predict", data=big, headers={"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 413 and "serve.max_body_bytes" in answer.json()["detail"]
    chunked = requests.post(
        f"{url}/v2/models/tiny/infer",
        data=(big[i : i + 1000] for i in range(0, len(big), 1000)),
        headers=JSON,
        timeout=10,
    )  # a generator body is sent chunked: no Content-Length
    assert chunked.status_code == 413 and "limit is 4096 bytes" in chunked.json()["error"]
    assert requests.post(f"{url}/predict", json={"instances": rows(frame)}, timeout=10).status_code == 200


def test_a_12_mib_body_gets_a_readable_413_from_urllib_and_requests(served):
    import urllib.error
    import urllib.request

    url, _, frame = served
    big = b'{"instances": [' + b"[1.0, 2.0, 3.0, 4.0], " * (12 * 2**20 // 22) + b"[1.0, 2.0, 3.0, 4.0]]}"
    answer = requests.post(f"{url}/predict", data=big, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 413 and "serve.max_body_bytes" in answer.json()["detail"]
    request = urllib.request.Request(f"{url}/predict", data=big, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413 and "serve.max_body_bytes" in json.loads(refused.value.read())["detail"]
    assert requests.post(f"{url}/predict", json={"instances": rows(frame)}, timeout=10).status_code == 200


def test_slow_request_504_then_good_requests_pass(served):
    url, endpoint, frame = served
    endpoint.delay_s = TIMEOUT_S * 2
    try:
        slow = requests.post(f"{url}/predict", json={"instances": rows(frame)}, timeout=10)
    finally:
        endpoint.delay_s = 0.0
    assert slow.status_code == 504 and "serve.request_timeout_s" in slow.json()["detail"]
    assert requests.post(f"{url}/predict", json={"instances": rows(frame)}, timeout=10).status_code == 200


def test_a_swapped_predictor_answers_new_requests(served):
    url, endpoint, frame = served
    old = endpoint.predictor
    endpoint.predictor = Predictor(old.model, name="tiny", version=2)
    try:
        answer = requests.post(f"{url}/predict", json={"instances": rows(frame)}, timeout=10)
        assert answer.json()["version"] == 2 and answer.headers["X-Model-Version"] == "2"
        assert requests.get(f"{url}/v2/models/tiny", timeout=10).json()["versions"] == ["2"]
    finally:
        endpoint.predictor = old


def test_metrics_by_route_template_status_and_version(served):
    url, _, frame = served
    requests.post(
        f"{url}/v2/models/tiny/infer",
        json={"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": rows(frame, 1)}]},
        timeout=10,
    )
    requests.post(f"{url}/predict", data=b"x" * (MAX_BODY_BYTES + 1), headers=JSON, timeout=10)
    text = requests.get(f"{url}/metrics", timeout=10).text
    assert (
        'kiln_requests_total{method="POST",model_version="1",replica="r1",route="/v2/models/{name}/infer",status="200"}'
    ) in text
    assert 'kiln_request_errors_total{replica="r1",route="/predict",status="413"}' in text
    assert "kiln_request_latency_seconds_bucket" in text and "kiln_batch_size_bucket" in text


def test_openapi_describes_the_real_schemas(served):
    url, _, _ = served
    schema = requests.get(f"{url}/openapi.json", timeout=10).json()
    components = schema["components"]["schemas"]
    assert {
        "PredictRequest",
        "PredictResponse",
        "V2InferRequest",
        "V2InferResponse",
        "V2ModelMetadata",
        "V2InputTensor",
    } <= set(components)
    infer = schema["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/V2InferRequest")
    assert "400" in infer["responses"]
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200


def test_model_info_names_the_features(served):
    url, _, _ = served
    info = requests.get(f"{url}/model", timeout=10).json()
    assert info == {
        "model": "tiny",
        "version": 1,
        "features": ["a", "b", "c", "d"],
        "labels": ["high", "low"],
        "task": "classification",
        "types": dict.fromkeys(["a", "b", "c", "d"], "number"),
        "candidate": "network",  # a version from before registry.candidates: the network
        "blend_weight": None,
    }


def test_probabilities_when_asked_keyed_by_label_beside_the_label(served):
    url, _, frame = served
    body = {"instances": rows(frame), "parameters": {"probabilities": True}}
    answer = requests.post(f"{url}/predict", json=body, timeout=10).json()
    assert len(answer["probabilities"]) == len(answer["predictions"]) == len(rows(frame))
    for label, probabilities in zip(answer["predictions"], answer["probabilities"], strict=True):
        assert set(probabilities) == {"high", "low"} and abs(sum(probabilities.values()) - 1) < 1e-5
        assert label == max(probabilities, key=probabilities.get)
    plain = requests.post(f"{url}/predict", json={"instances": rows(frame)}, timeout=10).json()
    assert "probabilities" not in plain and plain["predictions"] == answer["predictions"]
    bad = requests.post(f"{url}/predict", json={**body, "parameters": {"probabilities": "yes"}}, timeout=10)
    assert bad.status_code == 422 and "parameters.probabilities" in bad.json()["detail"]


@pytest.mark.parametrize(
    "body, named",
    [
        ({"probabilities": True}, "probabilities"),  # beside instances, not inside parameters
        ({"parameters": {"probabilites": True}}, "parameters.probabilites"),  # misspelt
    ],
)
def test_a_field_the_endpoint_does_not_know_is_named_not_ignored(served, body, named):
    url, _, frame = served
    reply = requests.post(f"{url}/predict", json={"instances": rows(frame)[:2], **body}, timeout=10)
    assert reply.status_code == 422, reply.text
    assert named in str(reply.json()["detail"])


def test_predict_file_in_chunks_shrinking_on_413(served, tmp_path):
    from serving.client import predict_file

    url, _, frame = served
    path = tmp_path / "rows.csv"
    frame.head(120)[["d", "label", "a", "c", "b"]].to_csv(path, index=False)  # any column order, label ignored
    assert predict_file(url, path, chunk_rows=500) == frame["label"].head(120).tolist()  # 500 rows > 4 KiB
    parquet = tmp_path / "rows.parquet"
    frame.head(9)[["a", "b", "c", "d"]].set_axis(["x1", "x2", "x3", "x4"], axis=1).to_parquet(parquet)
    assert predict_file(url, parquet, chunk_rows=4) == frame["label"].head(9).tolist()  # by position


def test_predict_file_names_the_bad_row(served, tmp_path):
    from pipelines.errors import DataError
    from serving.client import predict_file

    url, _, frame = served
    bad = frame.head(10)[["a", "b", "c", "d"]].astype(object)
    bad.loc[7, "c"] = "oops"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"row 8, column 'c': expected a number, got 'oops'"):
        predict_file(url, tmp_path / "bad.csv", chunk_rows=3)
    bad.loc[7, "c"] = float("inf")
    bad.to_csv(tmp_path / "inf.csv", index=False)
    with pytest.raises(DataError, match=r"row 8, column 'c': value must be finite"):
        predict_file(url, tmp_path / "inf.csv", chunk_rows=3)
    flags = frame.head(10)[["a", "b", "c", "d"]].assign(c=True)  # the endpoint refuses booleans (422)
    flags.to_parquet(tmp_path / "flags.parquet")
    with pytest.raises(DataError, match=r"flags.parquet: row 1, column 'c': expected a number, got True"):
        predict_file(url, tmp_path / "flags.parquet", chunk_rows=3)
    bad.loc[7, "c"] = None  # a missing cell is no error: the model imputes it
    bad.to_csv(tmp_path / "gap.csv", index=False)
    assert set(predict_file(url, tmp_path / "gap.csv")) <= {"high", "low"}


def test_cmd_predict_prints_one_prediction_per_line(served, tmp_path, capsys):
    from argparse import Namespace

    from pipelines.cli import cmd_predict
    from pipelines.errors import ModelNotFound

    url, _, frame = served
    frame.head(3).to_csv(tmp_path / "rows.csv", index=False)
    args = Namespace(name="tiny@champion", file=str(tmp_path / "rows.csv"), url=url, config=None, overrides=[])
    assert cmd_predict(args) == 0
    assert capsys.readouterr().out.split() == frame["label"].head(3).tolist()
    with pytest.raises(ModelNotFound, match="serves 'tiny' v1, not 'other'"):
        cmd_predict(Namespace(**{**vars(args), "name": "other"}))


def test_deployment_options_follow_the_config():
    from pipelines.config import ServeConfig
    from serving.app import deployment_options

    fixed = deployment_options(
        ServeConfig(num_replicas=3, num_cpus=0.5, num_gpus=0.25, max_ongoing_requests=16, max_queued_requests=100)
    )
    assert fixed == {
        "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0.25},
        "max_ongoing_requests": 16,
        "max_queued_requests": 100,
        "num_replicas": 3,
    }
    scaled = deployment_options(
        ServeConfig(autoscaling={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2})
    )
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2}


def test_deploy_takes_an_alias_or_a_version_not_both():
    from pipelines.config import KilnConfig
    from serving.app import deploy

    for kwargs in ({}, {"alias": "champion", "version": 3}):
        with pytest.raises(ValueError, match="exactly one of alias"):
            deploy(KilnConfig(), name="m", **kwargs)


def test_each_model_of_each_store_is_its_own_serve_application():
    from serving.app import app_name

    mine, theirs = "sqlite:////home/me/kiln-runs/mlflow.db", "http://mlflow.team:5000"
    assert app_name("house-prices", mine).startswith("kiln-house-prices-")
    assert app_name("team a/model", mine).startswith("kiln-team-a-model-")
    assert app_name("a", mine) != app_name("b", mine)
    assert app_name("a", mine) != app_name("a", theirs), "two users' models of one name on one cluster"
    assert app_name("a", mine) == app_name("a", mine)


@contextlib.contextmanager
def running(api):
    """`api` on a real uvicorn server at a free loopback port, for one test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def tiny_endpoint(tmp_path_factory):
    from tiny_model import train_tiny

    folder = tmp_path_factory.mktemp("tiny-endpoint")
    frame = train_tiny(folder)
    return StandIn(Predictor(InferenceModel(folder), name="tiny", version=1)), frame


def test_with_a_token_every_route_but_health_needs_it(tiny_endpoint):
    from serving import auth

    endpoint, frame = tiny_endpoint
    token = "s3cret-token-of-enough-length"
    api = build_api(endpoint, max_body_bytes=MAX_BODY_BYTES, timeout_s=TIMEOUT_S, token_sha256=auth.digest(token))
    with running(api) as url:
        body = {"instances": rows(frame)}
        refused = requests.post(f"{url}/predict", json=body, timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        wrong = requests.post(f"{url}/predict", json=body, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        good = requests.post(f"{url}/predict", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert good.status_code == 200 and good.json()["predictions"] == frame["label"].head(2).tolist()
        for open_path in auth.OPEN_PATHS:
            assert requests.get(f"{url}{open_path}", timeout=10).status_code == 200, open_path
        assert requests.get(f"{url}/model", timeout=10).status_code == 401
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 401


def test_rows_over_the_cap_413_and_deep_json_400(tiny_endpoint):
    endpoint, frame = tiny_endpoint
    api = build_api(endpoint, max_body_bytes=2**20, timeout_s=TIMEOUT_S, max_rows=50)
    with running(api) as url:
        many = requests.post(f"{url}/predict", json={"instances": rows(frame, 51)}, timeout=10)
        assert (
            many.status_code == 413
            and "51 rows in one request; the limit is 50 (serve.max_rows)" in many.json()["detail"]
        )
        assert requests.post(f"{url}/predict", json={"instances": rows(frame, 50)}, timeout=10).status_code == 200
        columns = [
            {"name": f, "shape": [51], "datatype": "FP64", "data": frame[f].head(51).tolist()}
            for f in ["a", "b", "c", "d"]
        ]
        v2_many = requests.post(f"{url}/v2/models/tiny/infer", json={"inputs": columns}, timeout=10)
        assert v2_many.status_code == 413 and "serve.max_rows" in v2_many.json()["error"]
        deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        kiln = requests.post(f"{url}/predict", data=deep, headers={"Content-Type": "application/json"}, timeout=10)
        assert kiln.status_code == 400 and "error parsing the body" in kiln.json()["detail"]  # FastAPI's own
        v2_deep = requests.post(f"{url}/v2/models/tiny/infer", data=deep, headers=JSON, timeout=10)
        assert v2_deep.status_code == 400 and "nested too deeply" in v2_deep.json()["error"]


def test_a_merged_batch_runs_at_most_max_rows_per_forward_pass(tiny_endpoint):
    endpoint, frame = tiny_endpoint
    predictor = endpoint.predictor
    calls = []
    original = predictor.model.outputs
    predictor.model.outputs = lambda part: calls.append(len(part)) or original(part)
    try:
        matrix = frame[["a", "b", "c", "d"]].to_numpy()
        items = [(predictor, matrix[:70]), (predictor, matrix[70:100])]
        outputs = predict_batches(items, max_rows=40)
    finally:
        del predictor.model.outputs
    assert calls == [40, 40, 20] and [len(o) for o in outputs] == [70, 30]


def test_the_token_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    from pipelines.config import ServeConfig
    from pipelines.errors import ConfigError
    from serving import auth

    monkeypatch.delenv("KILN_SERVE_TOKEN", raising=False)
    assert auth.read_token(ServeConfig()) is None  # auth: none
    with pytest.raises(ConfigError, match=r"serve.auth: token, but \$KILN_SERVE_TOKEN is empty"):
        auth.read_token(ServeConfig(auth="token"))
    monkeypatch.setenv("KILN_SERVE_TOKEN", "short")
    with pytest.raises(ConfigError, match="use at least 16"):
        auth.read_token(ServeConfig(auth="token"))
    monkeypatch.delenv("KILN_SERVE_TOKEN")
    path = tmp_path / "token"
    path.write_text("a-token-in-a-file-0123456789\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others \\(mode 644\\); chmod 600"):
        auth.read_token(ServeConfig(auth="token", token_file=str(path)))
    path.chmod(0o600)
    assert auth.read_token(ServeConfig(auth="token", token_file=str(path))) == "a-token-in-a-file-0123456789"


def test_an_endpoint_beyond_loopback_needs_a_token():
    from pipelines.config import load_config
    from pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match="serve.host: 0.0.0.0 is reachable from other machines; set serve.auth"):
        load_config(None, ["serve.host=0.0.0.0"])
    assert load_config(None, ["serve.host=0.0.0.0", "serve.auth=token"]).serve.auth == "token"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain; charset=utf-8"],
)
@pytest.mark.parametrize("path", ["/predict", "/v2/models/tiny/infer"])
def test_a_body_a_browser_could_send_from_any_page_is_refused_415(served, path, content_type):
    """text/plain, a form or a multipart body go out from any web page without a CORS preflight."""
    url, _, frame = served
    body = json.dumps({"instances": rows(frame)}).encode()
    answer = requests.post(f"{url}{path}", data=body, headers={"Content-Type": content_type}, timeout=10)
    assert answer.status_code == 415, answer.text
    assert "send application/json" in answer.text
    assert requests.post(f"{url}{path}", data=body, timeout=10).status_code != 415, "none at all: tritonclient's"


@pytest.mark.parametrize(
    "host, status",
    [
        ("evil.example:8000", 421),
        ("127.0.0.1.evil.example", 421),
        ("localhost:1234", 200),
        ("[::1]:8000", 200),
        ("127.0.0.1", 200),
    ],
)
def test_a_loopback_endpoint_answers_only_loopback_host_names(served, host, status):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: its Host header gives it away."""
    url, _, frame = served
    answer = requests.post(f"{url}/predict", json={"instances": rows(frame)}, headers={"Host": host}, timeout=10)
    assert answer.status_code == status, answer.text


def test_answered_hosts_follow_the_bind_address_and_serve_allowed_hosts():
    from serving.limits import LOOPBACK_HOSTS, answered_hosts, host_name

    assert answered_hosts("127.0.0.1", []) == LOOPBACK_HOSTS
    assert answered_hosts("0.0.0.0", []) is None, "bound for the network with no list: the token guards it"
    assert answered_hosts("0.0.0.0", ["Models.Example.com"]) == LOOPBACK_HOSTS | {"models.example.com"}
    assert [host_name(h) for h in ("a.b:80", "[::1]:8000", "::1", "A.B")] == ["a.b", "::1", "::1", "a.b"]
