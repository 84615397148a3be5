"""The CLI's promises that scripts rely on: machine-readable output is that alone on stdout."""

import json

from pipelines.cli import main


def test_plan_json_is_json_alone_on_stdout(tmp_path, capsys):
    assert main(["plan", "configs/quickstart.yaml", "--json", "--workers", "1,2",
                 "--set", f"storage.root={tmp_path}"]) == 0
    out, err = capsys.readouterr()
    plan = json.loads(out)  # what `kiln plan --json | jq` reads
    assert [row["num_workers"] for row in plan["workers"]] == [1, 2]
    assert "calibrating" in err  # the progress note went to stderr
