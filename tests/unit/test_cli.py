"""The CLI's promises that scripts rely on: machine-readable output is that alone on stdout."""

import json

from pipelines.cli import main


def test_plan_json_is_json_alone_on_stdout(tmp_path, capsys):
    assert (
        main(["plan", "configs/quickstart.yaml", "--json", "--workers", "1,2", "--set", f"storage.root={tmp_path}"])
        == 0
    )
    out, err = capsys.readouterr()
    plan = json.loads(out)  # what `kiln plan --json | jq` reads
    assert [row["num_workers"] for row in plan["workers"]] == [1, 2]
    assert "calibrating" in err  # the progress note went to stderr


def test_a_failing_stage_says_which_it_was_before_the_error_line(capsys):
    import pytest

    from pipelines import console

    timings = {}
    with pytest.raises(RuntimeError), console.stage("ingest", timings):
        raise RuntimeError("Attempting to recover 3 lost objects")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "» ingest ..." and out[1].startswith("✗ ingest    failed after ") and timings == {}


def test_a_librarys_sys_exit_inside_a_command_still_prints_a_reason(monkeypatch, capsys):
    from pipelines import cli

    def exits(args):
        raise SystemExit(1)

    monkeypatch.setattr(cli, "cmd_run", exits)
    monkeypatch.setattr(cli, "_shutdown", lambda: None)
    assert main(["run", "configs/quickstart.yaml"]) == 1
    assert "kiln: error: stopped by a library's sys.exit(1)" in capsys.readouterr().err


def test_objects_lost_during_ingest_are_read_again_once(monkeypatch):
    import pytest
    from ray.exceptions import ObjectLostError

    from pipelines.config import load_config
    from pipelines.data import ingest

    calls, said = [], []

    def flaky(cfg):
        calls.append(cfg)
        if len(calls) < 3:
            raise ObjectLostError("ab" * 14, None, "ingest")
        return "splits"

    monkeypatch.setattr(ingest, "_ingest", flaky)
    cfg = load_config(None, [])
    with pytest.raises(ObjectLostError):  # lost twice: the cluster's fault, reported as such
        ingest.ingest(cfg, say=said.append)
    assert len(calls) == 2 and said == ["  ingest lost objects (ObjectLostError); reading the source again, once"]
    assert ingest.ingest(cfg, say=said.append) == "splits"  # lost once: read again


def test_the_example_request_of_a_table_with_dates_is_json_the_endpoint_reads_as_trained(tmp_path):
    """vega's cars has a Year column of dates (1970-01-01): the run's example request must still be JSON, each date
    as the level name it was trained under, or `kiln run` fails after registering."""
    import datetime

    import pandas as pd

    from pipelines.cli import json_rows
    from pipelines.data.preprocessing import level

    frame = pd.DataFrame(
        {"year": [datetime.date(1970, 1, 1), None], "at": [pd.Timestamp("2020-05-01 12:00"), pd.NaT], "n": [1.5, None]}
    )
    rows = json.loads(json.dumps(json_rows(frame)))
    trained = [level(datetime.date(1970, 1, 1)), level(pd.Timestamp("2020-05-01 12:00")), 1.5]
    assert rows == [trained, [None, None, None]]
