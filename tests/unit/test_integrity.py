"""The signing key and the keyed digest of a version's files: what someone who can write the store but does not
hold the key cannot forge."""

from __future__ import annotations

import os
import stat

import pytest

from pipelines.errors import ConfigError
from pipelines.tracking import integrity

KEY = bytes(range(32))


def folder_of(root, files: dict[str, bytes]):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_a_users_key_is_created_on_first_use_readable_by_them_alone_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv(integrity.KEY_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    key = integrity.signing_key()
    path = tmp_path / ".config" / "kiln" / "signing.key"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert integrity.signing_key() == key  # the same key every time after


def test_a_teams_key_file_is_used_as_named_and_never_created(tmp_path, monkeypatch):
    path = tmp_path / "team.key"
    monkeypatch.setenv(integrity.KEY_ENV, str(path))
    with pytest.raises(ConfigError, match=f"KILN_SIGNING_KEY_FILE {path}: cannot open it"):
        integrity.signing_key()
    assert not path.exists()
    path.write_text(KEY.hex())
    path.chmod(0o600)
    assert integrity.signing_key() == KEY


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p.write_text(KEY.hex()), p.chmod(0o620)), "others can write it"),
        (lambda p: (p.write_text("abcd"), p.chmod(0o600)), "at least 32 bytes written as hex"),
        (lambda p: (p.write_text("not hex at all " * 8), p.chmod(0o600)), "at least 32 bytes"),
        (lambda p: os.mkfifo(p, 0o600), "not a regular file"),
    ],
)
def test_a_key_file_others_could_have_written_or_that_holds_no_key_is_refused(tmp_path, monkeypatch, make, message):
    path = tmp_path / "team.key"
    make(path)
    monkeypatch.setenv(integrity.KEY_ENV, str(path))
    with pytest.raises(ConfigError, match=message):
        integrity.signing_key()


def test_a_key_file_that_is_a_link_is_refused(tmp_path, monkeypatch):
    real = tmp_path / "real.key"
    real.write_text(KEY.hex())
    real.chmod(0o600)
    (tmp_path / "link.key").symlink_to(real)
    monkeypatch.setenv(integrity.KEY_ENV, str(tmp_path / "link.key"))
    with pytest.raises(ConfigError, match="cannot open it"):
        integrity.signing_key()


def test_the_digest_depends_on_the_key_names_bytes_and_where_one_file_ends(tmp_path):
    base = integrity.digest(folder_of(tmp_path / "a", {"x": b"12", "sub/y": b"3"}), KEY)
    assert base == integrity.digest(folder_of(tmp_path / "b", {"x": b"12", "sub/y": b"3"}), KEY)
    assert base != integrity.digest(tmp_path / "a", bytes(32))  # another key: what a store writer can make
    assert base != integrity.digest(folder_of(tmp_path / "c", {"x": b"13", "sub/y": b"3"}), KEY)
    assert base != integrity.digest(folder_of(tmp_path / "d", {"x": b"12", "sub/z": b"3"}), KEY)
    # The same bytes in order, framed differently: the plain concatenation of names and bytes would collide.
    one = integrity.digest(folder_of(tmp_path / "e", {"ab": b"c"}), KEY)
    assert one != integrity.digest(folder_of(tmp_path / "f", {"a": b"bc"}), KEY)
    assert base != integrity.digest(folder_of(tmp_path / "g", {"x": b"12", "sub/y": b"3", "extra": b""}), KEY)


def test_what_mlflows_own_load_writes_into_a_version_leaves_its_signature_alone(tmp_path):
    """mlflow.pyfunc.load_model("models:/NAME@ALIAS") on a local store writes registered_model_meta into the
    version's folder: a user loading the pyfunc must not make the version unservable. Only that name, only there."""
    files = {"MLmodel": b"m", "checkpoint/weights": b"w"}
    base = integrity.digest(folder_of(tmp_path / "a", files), KEY)
    assert base == integrity.digest(folder_of(tmp_path / "b", {**files, "registered_model_meta": b"v: 1"}), KEY)
    assert base != integrity.digest(folder_of(tmp_path / "c", {**files, "checkpoint/registered_model_meta": b""}), KEY)


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_version_holding_a_link_or_a_special_file_is_refused_naming_it(tmp_path, kind):
    root = folder_of(tmp_path / "v", {"model.pt": b"w"})
    if kind == "link":
        (root / "kiln.json").symlink_to("/etc/hostname")
    else:
        os.mkfifo(root / "kiln.json")
    with pytest.raises(integrity.IntegrityError, match="kiln.json: a link or special file"):
        integrity.digest(root, KEY)
