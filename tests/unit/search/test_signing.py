"""A search's saved state is signed as Tune writes it and checked before a resume unpickles any of it."""

from __future__ import annotations

import pyarrow.fs
import pytest

from pipelines.search import signing
from pipelines.tracking import integrity

KEY = bytes(range(32))
NAME = "kiln-test-1"


def write(folder, files: dict[str, bytes]):
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


@pytest.fixture
def saved(tmp_path):
    """A search folder in storage as Tune leaves it (its staging copied over), and its signature saved."""
    staging, stored = tmp_path / "staging", tmp_path / "store" / NAME
    files = {
        "experiment_state-1.json": b'{"trial": "pickled inside"}',
        "basic-variant-state-1.json": b"pickle",
        "run_trial_0/params.pkl": b"params",
        "run_trial_0/result.json": b"{}",
    }
    write(staging, files)
    write(stored, {**files, "tuner.pkl": b"tuner", "kiln-rungs.json": b"{}", ".validate_storage_marker": b""})
    signature = signing.SearchSignature(pyarrow.fs.LocalFileSystem(), str(stored), NAME, key=KEY)
    assert signature.add_local(staging) and signature.add_stored(signing.TUNER_STATE)
    assert not signature.add_local(staging)  # nothing new since
    signature.save()
    return staging, stored


def checked(stored, key=KEY) -> int:
    signature = signing.SearchSignature(pyarrow.fs.LocalFileSystem(), str(stored), NAME, key=key)
    signature.load()
    return signature.verify()


def test_what_tune_would_unpickle_is_signed_and_data_files_are_not():
    assert signing.guarded("tuner.pkl") and signing.guarded("experiment_state-2026.json")
    assert signing.guarded("run_trial_0/params.pkl") and signing.guarded("run_trial_0/error.pkl")
    assert signing.guarded("basic-variant-state-x.json")
    assert not signing.guarded("kiln-rungs.json") and not signing.guarded(signing.SIGNATURE_FILE)
    assert not signing.guarded("run_trial_0/result.json") and not signing.guarded("run_trial_0/progress.csv")
    assert not signing.guarded("tmp-experiment_state-1.json") and not signing.guarded(".validate_storage_marker")


def test_a_search_as_saved_resumes_and_so_does_one_with_an_older_saved_version_of_a_file(saved):
    staging, stored = saved
    assert checked(stored) == 4  # tuner.pkl, the two states, params.pkl
    write(staging, {"experiment_state-1.json": b'{"trial": "later"}'})  # Tune saves again...
    signature = signing.SearchSignature(pyarrow.fs.LocalFileSystem(), str(stored), NAME, key=KEY)
    signature.load()
    assert signature.add_local(staging)
    signature.save()
    assert checked(stored) == 4  # ...and storage may still hold the earlier version when the driver dies


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda s: write(s, {"tuner.pkl": b"tuner, altered"}), "tuner.pkl"),
        (lambda s: write(s, {"run_trial_0/params.pkl": b"os.system"}), "run_trial_0/params.pkl"),
        (lambda s: write(s, {"run_trial_1/error.pkl": b"new"}), "run_trial_1/error.pkl"),
        (lambda s: write(s, {"searcher-state-2.json": b"new"}), "searcher-state-2.json"),
    ],
)
def test_an_altered_or_added_state_file_is_refused_naming_it(saved, change, named):
    _, stored = saved
    change(stored)
    with pytest.raises(integrity.IntegrityError, match=f"{named}: not a file search {NAME} saved"):
        checked(stored)


def test_a_signature_under_another_key_or_missing_is_refused(saved):
    _, stored = saved
    with pytest.raises(integrity.IntegrityError, match="not signed with this key"):
        checked(stored, key=b"k" * 32)
    # A store writer re-signs their own list: without the key, the HMAC cannot match.
    (stored / signing.SIGNATURE_FILE).write_text('{"signed": "{\\"files\\": {}, \\"search\\": \\"x\\"}", "hmac": "0"}')
    with pytest.raises(integrity.IntegrityError, match="not signed with this key"):
        checked(stored)
    (stored / signing.SIGNATURE_FILE).unlink()
    with pytest.raises(integrity.IntegrityError, match=f"search {NAME} has no kiln-search.sig"):
        checked(stored)
