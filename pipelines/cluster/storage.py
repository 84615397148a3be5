"""Where a run's checkpoints live (a folder, or a URI every node reaches through a pyarrow filesystem),
and what is left of them once the winner is registered."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from pipelines.config import KilnConfig
from pipelines.errors import ConfigError

SCHEMES = ("s3", "gs", "gcs", "file", "hdfs", "abfs", "abfss")


def shown(uri: str) -> str:
    """A URI fit for messages and logs: credentials written into it (s3://KEY:SECRET@bucket) are masked."""
    return re.sub(r"://[^/@]*@", "://***@", uri)


def masked(tree):
    """A config dump with every URI's credentials masked (storage.root, data.source, tracking.uri), for what is
    written to MLflow: params, tags, the logged config."""
    if isinstance(tree, dict):
        return {key: masked(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [masked(value) for value in tree]
    return shown(tree) if isinstance(tree, str) else tree


def filesystem(cfg: KilnConfig):
    """storage.root as (pyarrow filesystem, path in it). A plain folder is the local filesystem."""
    import pyarrow.fs

    if not cfg.storage.is_uri:
        return pyarrow.fs.LocalFileSystem(), cfg.storage.root
    return uri_filesystem(cfg.storage.root, "storage.root")


def uri_filesystem(uri: str, where: str):
    """An object-store URI as (pyarrow filesystem, path in it); ConfigError naming `where` for a scheme Kiln does
    not take or a URI pyarrow cannot open."""
    import pyarrow.fs

    scheme = uri.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"{where}: unsupported scheme {scheme}:// in {shown(uri)}; use a folder or one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as err:
        raise ConfigError(f"{where}: cannot open {shown(uri)}: {str(err).splitlines()[0]}") from None
    return fs, path.rstrip("/")


def check_reachable(cfg: KilnConfig) -> None:
    """A storage.root that cannot be listed fails before any run starts, not at the first checkpoint."""
    if not cfg.storage.is_uri:
        return
    fs, path = filesystem(cfg)
    try:
        fs.create_dir(f"{path}/ray", recursive=True)
        fs.get_file_info(f"{path}/ray")
    except OSError as err:
        raise ConfigError(
            f"storage.root: cannot write to {shown(cfg.storage.root)}: {str(err).splitlines()[0]}"
        ) from None


def ray_storage(cfg: KilnConfig) -> dict:
    """The storage_path/storage_filesystem pair for Ray's RunConfig: Train and Tune write checkpoints there."""
    fs, path = filesystem(cfg)
    return {"storage_path": f"{path}/ray", "storage_filesystem": fs}


def search_file(cfg: KilnConfig, search_name: str, name: str) -> str:
    """A file Kiln keeps beside Tune's records of a search (in its experiment folder)."""
    return f"{ray_storage(cfg)['storage_path']}/{search_name}/{name}"


def write_text(cfg: KilnConfig, path: str, text: str) -> None:
    """Write `text` at `path` in storage, replacing what was there (a local file is replaced atomically)."""
    fs = filesystem(cfg)[0]
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    partial = f"{path}.partial"
    with fs.open_output_stream(partial) as out:
        out.write(text.encode())
    fs.move(partial, path)


def read_text(cfg: KilnConfig, path: str) -> str | None:
    """The text at `path` in storage, or None when there is none."""
    fs = filesystem(cfg)[0]
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read().decode()
    except OSError:  # not there (FileNotFoundError is one)
        return None


def tree_bytes(fs, path: str) -> int:
    import pyarrow.fs

    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True))
    return sum(i.size or 0 for i in infos if i.type == pyarrow.fs.FileType.File)


def folder_bytes(folder: Path) -> int:
    import pyarrow.fs

    return tree_bytes(pyarrow.fs.LocalFileSystem(), str(folder))


def prune_checkpoints(cfg: KilnConfig, trials: dict[str, list[str]], *, keep: str) -> int:
    """Delete every trial's checkpoints but `keep`'s (the registered model holds its own copy): its Train run's
    folder, or (a trial trained in its Tune actor) the checkpoint folders it reported, given in `trials`
    (trial id: paths). Returns the bytes freed."""
    import pyarrow.fs

    fs, root = filesystem(cfg)
    freed = 0
    for trial_id, checkpoints in trials.items():
        if trial_id == keep:
            continue
        train_run = f"{root}/ray/train-{trial_id}"  # named in search.trial
        for path in [train_run, *checkpoints]:
            if fs.get_file_info(path).type == pyarrow.fs.FileType.Directory:
                freed += tree_bytes(fs, path)
                fs.delete_dir(path)
    return freed


def local_checkpoint(cfg: KilnConfig, path: str) -> str:
    """A folder on this machine holding the checkpoint at `path` (a path in storage's filesystem):
    the path itself for a local storage.root, else a copy under storage.local_root/fetched."""
    import pyarrow.fs

    fs = filesystem(cfg)[0]
    if isinstance(fs, pyarrow.fs.LocalFileSystem):
        return path
    target = cfg.storage_root / "fetched" / hashlib.sha256(path.encode()).hexdigest()[:16]
    done = target.with_name(target.name + ".complete")
    if not done.exists():  # a fetch cut short is fetched again, never used half-copied
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        pyarrow.fs.copy_files(
            path, str(target), source_filesystem=fs, destination_filesystem=pyarrow.fs.LocalFileSystem()
        )
        done.touch()
    return str(target)
