"""The search ledger: what `kiln run --resume` continues, kept beside Tune's state under storage.root."""

import pytest

from pipelines.config import load_config
from pipelines.search import ledger


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_the_search_ledger_lives_under_storage_root_and_keeps_the_latest(tmp_path, scheme):
    cfg = load_config(None, [f"storage.root={scheme}{tmp_path}/shared", f"storage.local_root={tmp_path / 'here'}",
                             "name=ledger"])
    old = ledger.new(cfg, "run-a", "ledger-1")
    ledger.save(cfg, old)
    newer = ledger.SearchState("ledger-2", old.config_hash, "run-b", ledger.RUNNING, old.started + 5)
    ledger.save(cfg, newer)
    ledger.save(cfg, newer.with_status(ledger.INTERRUPTED))
    (tmp_path / "shared" / "searches" / "ledger-3.json.tmp").write_text("{half a fi")  # a write cut short
    assert ledger.latest(cfg) == newer.with_status(ledger.INTERRUPTED)
    assert sorted(p.name for p in (tmp_path / "shared" / "searches").glob("*.json")) == ["ledger-1.json",
                                                                                      "ledger-2.json"]
    assert not (tmp_path / "here" / "searches").exists()
