"""The registry against a real MLflow SQLite store (no Ray): gate, load check, promote, rollback."""

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient
from tiny_model import train_tiny

from pipelines.cli import main
from pipelines.config import load_config
from pipelines.errors import ModelNotFound
from pipelines.tracking import mlflow_runs, registry

NAME = "gate-test"


@pytest.fixture
def store(tmp_path):
    cfg = load_config(None, [f"storage.root={tmp_path / 'runs'}", f"registry.model_name={NAME}", "name=gate"])
    cfg = cfg.for_task("classification")
    good, weak = tmp_path / "good", tmp_path / "weak"
    frame = train_tiny(good, steps=100)
    train_tiny(weak, steps=1, seed=3)
    test = frame.sample(80, random_state=0)
    return cfg, {"good": str(good), "weak": str(weak)}, test


def register(cfg, folder, test, score=None, **overrides):
    if overrides:
        cfg = cfg.model_copy(update={"registry": cfg.registry.model_copy(update=overrides)})
    parent = mlflow_runs.start_parent(cfg, run_name="search", tags={})
    from pipelines.model.evaluate import test_report

    features = test[["a", "b", "c", "d"]]
    if score is None:
        score = test_report(folder, features.to_numpy(), test["label"].to_numpy()).accuracy
    return registry.register(
        cfg,
        checkpoint_dir=folder,
        test_frame=features,
        test_labels=test["label"].tolist(),
        parent_run_id=parent,
        test_value=score,
        data_fingerprint="f" * 16,
    ), parent


def champion(cfg) -> int:
    return int(mlflow_runs.client(cfg).get_model_version_by_alias(NAME, "champion").version)


def test_if_better_gate_keeps_the_champion_against_a_weaker_model(store):
    cfg, folders, test = store
    first, _ = register(cfg, folders["good"], test)
    assert first.promoted and first.reason == "no champion yet"
    second, parent = register(cfg, folders["weak"], test)
    assert not second.promoted and champion(cfg) == first.version
    assert "is worse than champion v1" in second.reason and "on the same test split" in second.reason
    tags = MlflowClient(cfg.tracking_uri).get_run(parent).data.tags
    assert tags["kiln.promoted"] == "false" and tags["kiln.promotion"] == second.reason
    third, _ = register(cfg, folders["good"], test)  # as good as the champion: promoted
    assert third.promoted and champion(cfg) == third.version


def test_if_better_compares_again_when_another_run_moved_the_alias_meanwhile(store, monkeypatch):
    from pipelines.model.evaluate import test_report

    cfg, folders, test = store
    register(cfg, folders["weak"], test)  # v1, the champion
    register(cfg, folders["good"], test, promote="never")  # v2: another run's model, better than ours
    features, labels = test[["a", "b", "c", "d"]].to_numpy(), test["label"].to_numpy()
    weak, good = (test_report(folders[k], features, labels).accuracy for k in ("weak", "good"))
    assert weak < good
    gate, moved = registry.should_promote, []

    def another_run_finishes_meanwhile(cfg, client, *args):
        verdict = gate(cfg, client, *args)
        if not moved:  # after this run's gate passed against v1, another run moves the alias to its v2
            client.set_registered_model_alias(NAME, "champion", "2")
            moved.append(True)
        return verdict

    monkeypatch.setattr(registry, "should_promote", another_run_finishes_meanwhile)
    ours, _ = register(cfg, folders["weak"], test, score=(weak + good) / 2)  # beats v1, not v2
    assert moved and not ours.promoted and champion(cfg) == 2
    assert "worse than champion v2" in ours.reason


def test_always_and_never(store):
    cfg, folders, test = store
    register(cfg, folders["good"], test)
    assert register(cfg, folders["weak"], test, promote="never")[0].promoted is False
    assert champion(cfg) == 1
    assert register(cfg, folders["weak"], test, promote="always")[0].promoted is True
    assert champion(cfg) == 3


def test_a_version_that_fails_to_load_never_gets_the_alias(store, tmp_path):
    cfg, folders, test = store
    register(cfg, folders["good"], test)
    broken = tmp_path / "broken"
    shutil.copytree(folders["good"], broken)
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="failed its load check, alias not moved"):
        register(cfg, str(broken), test, score=1.0, promote="always")
    assert champion(cfg) == 1


def test_promote_and_rollback_through_the_cli(store, capsys):
    cfg, folders, test = store
    register(cfg, folders["good"], test)
    register(cfg, folders["weak"], test, promote="never")
    store_args = ["--set", f"storage.root={cfg.storage.root}", "--set", f"registry.model_name={NAME}"]
    assert main(["promote", NAME, "2", *store_args]) == 0
    assert champion(cfg) == 2
    assert main(["rollback", NAME, *store_args]) == 0
    assert champion(cfg) == 1
    assert "v2 -> v1" in capsys.readouterr().out
    assert main(["rollback", NAME, *store_args]) == 1  # nothing earlier than v1
    assert "no previous champion to roll back to" in capsys.readouterr().err
    assert main(["promote", NAME, "9", *store_args]) == 1
    assert champion(cfg) == 1


def test_rollback_follows_the_live_alias_when_it_was_moved_outside_kiln(store, capsys):
    cfg, folders, test = store
    register(cfg, folders["good"], test)
    register(cfg, folders["weak"], test, promote="never")
    register(cfg, folders["good"], test, promote="never")
    mlflow_runs.client(cfg).set_registered_model_alias(NAME, "champion", "3")  # by hand, e.g. in the MLflow UI
    store_args = ["--set", f"storage.root={cfg.storage.root}", "--set", f"registry.model_name={NAME}"]
    assert main(["rollback", NAME, *store_args]) == 0
    assert champion(cfg) == 1  # the champion before the live one, not the history's own previous entry
    assert "v3 -> v1" in capsys.readouterr().out


def test_resolve_reads_only_this_store(store):
    cfg, folders, test = store
    register(cfg, folders["good"], test)
    assert registry.resolve(cfg, f"{NAME}@champion") == (NAME, 1)
    assert registry.resolve(cfg, f"{NAME}/1") == (NAME, 1)
    with pytest.raises(ModelNotFound, match="registry.alias 'blue' not found"):
        registry.resolve(cfg, f"{NAME}@blue")


def test_promote_takes_the_config_as_every_command_does(store, tmp_path):
    cfg, folders, test = store
    register(cfg, folders["good"], test)
    register(cfg, folders["weak"], test, promote="never")
    config = tmp_path / "store.yaml"
    config.write_text(f"storage: {{root: {cfg.storage.root}}}\nregistry: {{model_name: {NAME}}}\n")
    assert main(["promote", NAME, "2", str(config)]) == 0  # kiln promote NAME VERSION CONFIG, as the README says
    assert champion(cfg) == 2
    assert main(["rollback", NAME, "--config", str(config)]) == 0  # or --config CONFIG
    assert champion(cfg) == 1


def test_a_version_holds_code_and_json_not_a_pickle_and_a_changed_file_is_refused(store, capsys):
    import hashlib

    from pipelines.tracking import integrity
    from pipelines.tracking import mlflow_store as stores

    cfg, folders, test = store
    registered, _ = register(cfg, folders["good"], test)
    folder = Path(stores.version_folder(cfg.tracking_uri, NAME, registered.version))
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))], files
    assert {"pyfunc_code.py", "artifacts/checkpoint/kiln.json", "artifacts/checkpoint/model.pt"} <= files
    assert "artifacts/checkpoint/optimizer.pt" not in files  # a version keeps what serving needs
    assert stores.load_verified(cfg.tracking_uri, NAME, registered.version).predict(test[["a", "b", "c", "d"]])
    # Someone with write access to the store, but not the key, swaps the weights under the version...
    stored = next((cfg.storage_root / "mlartifacts").rglob("artifacts/checkpoint/model.pt"))
    weights = bytearray(stored.read_bytes())
    weights[len(weights) // 2] ^= 0xFF
    stored.write_bytes(bytes(weights))
    with pytest.raises(integrity.IntegrityError, match=f"{NAME} v1: its files changed since registration"):
        stores.load_verified(cfg.tracking_uri, NAME, registered.version)
    # ...and signs it again with a key of their own: still refused.
    client = stores.client(cfg.tracking_uri)
    client.set_model_version_tag(NAME, "1", integrity.TAG, integrity.digest(folder, b"w" * 32))
    with pytest.raises(integrity.IntegrityError, match="its files changed since registration, or it was signed"):
        stores.load_verified(cfg.tracking_uri, NAME, registered.version)
    code = main(["serve", "--model", f"{NAME}/1", "--set", f"storage.root={cfg.storage_root}"])
    assert code == 2 and "its files changed since registration" in capsys.readouterr().err
    # An unkeyed sha256 in place of the signature (what Kiln recorded before keys) is not taken either.
    client.delete_model_version_tag(NAME, "1", integrity.TAG)
    client.set_model_version_tag(NAME, "1", integrity.LEGACY_TAG, hashlib.sha256(b"anything").hexdigest())
    with pytest.raises(integrity.IntegrityError, match="registered without a signature .an unkeyed sha256"):
        stores.load_verified(cfg.tracking_uri, NAME, registered.version)


def test_the_users_pyfunc_load_check_runs_no_stored_code_before_the_signature_is_checked(store, tmp_path):
    from pipelines.tracking import integrity
    from pipelines.tracking import mlflow_store as stores

    cfg, folders, test = store
    registered, _ = register(cfg, folders["good"], test)
    marker = tmp_path / "ran"
    stored = next((cfg.storage_root / "mlartifacts").rglob("pyfunc_code.py"))
    stored.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n" + stored.read_text())
    with pytest.raises(integrity.IntegrityError, match="its files changed since registration"):
        stores.load_pyfunc(cfg.tracking_uri, NAME, registered.version)
    assert not marker.exists()


def test_an_alias_move_waits_for_another_kiln_process_moving_it_and_gives_up_after_a_while(store, monkeypatch):
    import subprocess
    import sys
    import time

    cfg, folders, test = store
    register(cfg, folders["good"], test)  # v1, the champion
    register(cfg, folders["good"], test, promote="never")  # v2
    holder = subprocess.Popen(  # another kiln process in the middle of a move: it holds the alias's lock
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pipelines.tracking import registry\nfrom pipelines.config import "
            f"load_config\ncfg = load_config(None, ['storage.root={cfg.storage.root}'])\n"
            f"with registry.alias_lock(cfg, '{NAME}', 'champion'):\n"
            "    print('held', flush=True); time.sleep(float(sys.stdin.readline()))\nprint(time.time(), flush=True)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(registry, "ALIAS_WAIT_S", 0.5)
        with pytest.raises(RuntimeError, match="champion alias of gate-test stayed locked by another kiln process"):
            registry.promote(cfg, NAME, 2)
        assert champion(cfg) == 1  # refused, not moved
        ours, _ = register(cfg, folders["good"], test)  # a run's gate: registered, not moved, and says why
        assert not ours.promoted and "stayed locked by another kiln process" in ours.reason and champion(cfg) == 1
        monkeypatch.setattr(registry, "ALIAS_WAIT_S", 30.0)
        holder.stdin.write("2\n")
        holder.stdin.flush()
        registry.promote(cfg, NAME, 2)  # waits for the other move to end, then moves
        moved_at = time.time()
        assert float(holder.stdout.readline()) <= moved_at and champion(cfg) == 2
    finally:
        holder.kill()
        holder.wait()
