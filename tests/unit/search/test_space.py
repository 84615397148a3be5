import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError
from pipelines.search.space import Domain, parse_domain, parse_search_space


def space(**entries):
    return ["tune.search_space=" + repr({k.replace("__", "."): v for k, v in entries.items()}).replace("'", '"')]


def test_domains_parse():
    parsed = parse_search_space(
        {
            "train.lr": {"loguniform": [1e-4, 1e-2]},
            "model.dropout": {"uniform": [0, 0.5]},
            "train.batch_size": {"randint": [16, 128]},
            "model.hidden": {"choice": [[64], [128, 64]]},
        }
    )
    assert parsed["train.lr"] == Domain("loguniform", (1e-4, 1e-2))
    assert parsed["train.batch_size"] == Domain("randint", (16, 128))
    assert parsed["model.hidden"].examples() == [[64], [128, 64]]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"gaussian": [0, 1]}, "unknown domain 'gaussian'"),
        ({"choice": []}, "choice needs a non-empty list"),
        ({"uniform": [1, 0]}, "needs low < high"),
        ({"loguniform": [0, 1]}, "loguniform needs low > 0"),
        ({"uniform": [0]}, "needs [low, high]"),
        ([1, 2], "expected one of"),
    ],
)
def test_malformed_domains(spec, message):
    with pytest.raises(ValueError) as err:
        parse_domain("train.lr", spec)
    assert message in str(err.value) and "tune.search_space.train.lr" in str(err.value)


def test_keys_must_point_into_the_config():
    with pytest.raises(ConfigError, match=r"tune.search_space.train.learning_rate: not a key"):
        load_config(None, space(train__learning_rate={"uniform": [0.1, 0.2]}))


def test_every_edge_of_a_domain_must_validate():
    with pytest.raises(ConfigError, match=r"tune.search_space.model.dropout: 1.5 is invalid"):
        load_config(None, space(model__dropout={"uniform": [0.1, 1.5]}))


def test_with_sample_sets_dotted_paths():
    cfg = load_config(None)
    trial = cfg.with_sample({"train.lr": 0.01, "model.hidden": [32]})
    assert trial.train.lr == 0.01 and trial.model.hidden == [32]
    assert cfg.train.lr != 0.01  # the base config is untouched
