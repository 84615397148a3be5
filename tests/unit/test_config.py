from pathlib import Path

import pytest

from pipelines.config import KilnConfig, apply_overrides, load_config
from pipelines.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml")) + sorted((ROOT / "tests" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    assert isinstance(load_config(path), KilnConfig)


def test_quickstart_is_the_documented_search():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.data.source == "builtin:digits"
    assert (cfg.model.name, cfg.tune.num_samples, cfg.train.num_workers) == ("mlp", 8, 1)
    assert cfg.train.epochs == 10 and cfg.tune.scheduler.name == "asha"
    assert cfg.serve.host == "127.0.0.1"


def test_reference_documents_every_key():
    """reference.yaml sets every key of the schema, so it is the complete documentation."""
    import yaml

    from pipelines.tracking.mlflow_runs import flatten

    reference = flatten(yaml.safe_load((ROOT / "configs" / "reference.yaml").read_text()))
    defaults = flatten(KilnConfig().model_dump())
    missing = sorted(k for k in defaults if not any(r == k or r.startswith(k + ".") for r in reference))
    assert missing == []


def test_overrides_take_yaml_values():
    raw = apply_overrides({"train": {"lr": 1}}, ["train.lr=3e-4", "model.hidden=[32, 16]", "serve.enabled=false"])
    cfg = KilnConfig.model_validate(raw)
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.hidden == [32, 16]
    assert cfg.serve.enabled is False


def test_yaml_exponent_without_dot_is_coerced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {lr: 1e-3}\n")  # YAML 1.1 reads this as a string
    assert load_config(path).train.lr == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.num_workers=-1", "train.num_workers: Input should be greater than 0 (got -1)"),
        ("train.epochs=0", "train.epochs: Input should be greater than 0"),
        ("train.lr=fast", "train.lr: Input should be a valid number"),
        ("train.learning_rate=0.1", "train.learning_rate: unknown key"),
        ("tune.metric=val_f1", "tune.metric: must be one of"),
        ("tune.mode=maximize", "tune.mode: Input should be 'min' or 'max'"),
        ("data.split.val=0.8", "data.split: val + test must leave"),
        ("serve.port=70000", "serve.port: Input should be less than or equal to 65535"),
        ("registry.promote=sometimes", "registry.promote: Input should be"),
        ("registry.model_name=../../etc/x", "registry.model_name: '../../etc/x': use letters"),
        ("registry.model_name=a/b", "registry.model_name: 'a/b': use letters"),
        ("name=..", "name: '..': use letters"),
        ("name=.hidden", "name: '.hidden': use letters"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs" / "quickstart.yaml", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_set_needs_key_and_value():
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(None, ["train.lr"])


def test_storage_root_is_made_absolute_where_the_config_is_loaded(tmp_path, monkeypatch):
    """Ray workers run in other directories: a relative root must not follow them there."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["storage.root=./runs"])
    assert cfg.storage.root == str(tmp_path / "runs")
    monkeypatch.chdir("/")
    assert KilnConfig.model_validate(cfg.model_dump()).storage_root == tmp_path / "runs"


def test_a_config_without_storage_writes_under_an_absolute_folder():
    """The default storage.root is made absolute like one from the file (MLflow's artifact URI needs it)."""
    cfg = load_config(ROOT / "configs" / "examples" / "reviews.yaml")
    assert Path(cfg.storage.root).is_absolute() and cfg.storage_root == Path.cwd() / "kiln-runs"


@pytest.mark.parametrize("example", sorted((ROOT / "configs" / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_config_loads(example):
    assert load_config(example).name == example.stem.replace("_", "-")


def test_https_needs_both_files_present_and_an_ingress_that_serves_it(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("pem")
    key.write_text("pem")
    with pytest.raises(ConfigError, match="serve.tls_keyfile: HTTPS needs both"):
        load_config(None, [f"serve.tls_certfile={cert}"])
    with pytest.raises(ConfigError, match=f"serve.tls_keyfile: {tmp_path / 'none.pem'} is not a file"):
        load_config(None, [f"serve.tls_certfile={cert}", f"serve.tls_keyfile={tmp_path / 'none.pem'}"])
    with pytest.raises(ConfigError, match="serve.ingress: haproxy serves no TLS"):
        load_config(None, [f"serve.tls_certfile={cert}", f"serve.tls_keyfile={key}", "serve.ingress=haproxy"])
    served = load_config(None, [f"serve.tls_certfile={cert}", f"serve.tls_keyfile={key}"])
    from serving.ingress import uses_haproxy

    assert served.serve.scheme == "https" and not uses_haproxy(served)  # auto picks the proxy, which has TLS


@pytest.mark.parametrize(
    "url, token, warned",
    [
        ("http://10.0.0.5:8000", "t" * 20, True),  # the token in clear across the network
        ("https://10.0.0.5:8000", "t" * 20, False),
        ("http://127.0.0.1:8000", "t" * 20, False),  # loopback never leaves the machine
        ("http://10.0.0.5:8000", "", False),  # nothing secret sent
    ],
)
def test_kiln_predict_warns_when_it_would_send_the_token_over_plain_http_to_another_machine(
    url, token, warned, monkeypatch
):
    from serving import client

    monkeypatch.setenv("KILN_SERVE_TOKEN", token)
    assert client.sends_token_in_clear(url) is warned


def test_a_run_on_other_data_is_named_after_that_data_unless_name_is_set():
    quickstart = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
    assert load_config(quickstart).name == "digits-quickstart"
    other = load_config(quickstart, ["data.source=/data/hotel rates.csv"])
    assert other.name == "hotel-rates" and other.data.source == "/data/hotel rates.csv"
    assert load_config(quickstart, ["data.source=/data/x.csv", "name=mine"]).name == "mine"
    assert load_config(quickstart, ["data.source=s3://bucket/sales/"]).name == "sales"
    assert load_config(quickstart, ["data.source=/d/.."]).name == "digits-quickstart"  # nothing usable: as written


def test_a_model_named_after_the_configs_data_is_named_after_other_data_instead():
    """The quickstart on another table: its model must not register as a new version of digits-mlp (moving the
    digits model's alias to a model of other columns)."""
    quickstart = ROOT / "configs" / "quickstart.yaml"
    assert load_config(quickstart).registry.model_name == "digits-mlp"
    other = load_config(quickstart, ["data.source=/data/attrition.csv", "data.label=Attrition"])
    assert (other.name, other.registry.model_name) == ("attrition", "attrition-mlp")
    chosen = load_config(quickstart, ["data.source=/data/attrition.csv", "registry.model_name=churn"])
    assert chosen.registry.model_name == "churn"  # the user's own choice stands
    tiny = load_config(ROOT / "tests" / "configs" / "tiny.yaml", ["data.source=/data/attrition.csv"])
    assert tiny.registry.model_name == "kiln-test-mlp"  # a name not made of the config's data keeps it
