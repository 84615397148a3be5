"""`kiln score`: a registered version over a CSV or parquet input, or a folder of images, on Ray Data, offline.
Ray Data reads the input (pipelines/scoring/inputs.py) and runs `map_batches` over an autoscaling pool of actors,
each loading the version once through the endpoint's integrity-checked load; the driver streams the ordered
results into the output and the errors file, numbering rows as they come, under temporary names moved into place
only when every row is accounted for."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from pipelines import console
from pipelines.cluster import runtime
from pipelines.config import KilnConfig
from pipelines.data import sources
from pipelines.errors import DataError
from pipelines.model import checkpoint
from pipelines.scoring import inputs, parts, rows
from pipelines.scoring.output import Target
from pipelines.tracking import integrity, mlflow_runs, mlflow_store, registry


@dataclass
class Scored:
    rows_in: int
    rows_out: int
    rows_failed: int
    seconds: float
    output: str
    errors: str | None

    @property
    def line(self) -> str:
        rate = self.rows_in / max(self.seconds, 1e-9)
        failed = f", {self.rows_failed} failed (reasons: {self.errors})" if self.rows_failed else ""
        return (
            f"scored {self.rows_out} of {self.rows_in} rows in {self.seconds:.1f} s ({rate:,.0f} rows/s)"
            f"{failed} -> {self.output}"
        )


BLOCK_BYTES = 1 << 20  # Ray Data's block size for the job: a few thousand table rows, streamed (scored_batches)
PROGRESS_EVERY_S = 5.0  # a progress line at most this often (a log stays short; a terminal still sees it move)


def progress_line(done: int, total: int | None, seconds: float, first: tuple[int, float] = (0, 0.0)) -> str:
    """Rows scored so far, their rate, and with a known total (parquet's footers) the share and time left. The
    rate is counted from `first` (the rows and seconds when the first batch came back), so the actors' start
    does not stretch the time left."""
    rows_then, seconds_then = first if done > first[0] and seconds > first[1] else (0, 0.0)
    rate = (done - rows_then) / max(seconds - seconds_then, 1e-9)
    if not total:
        return f"  {done:,} rows scored, {rate:,.0f} rows/s"
    left = (total - done) / rate if rate > 0 else float("inf")
    eta = f"about {left:,.0f} s left" if left != float("inf") else "time left unknown"
    return f"  {done:,} of {total:,} rows scored ({done / total:.0%}), {rate:,.0f} rows/s, {eta}"


class Scorer:
    """One actor of the pool: the version the driver verified, shipped to it in memory (no MLflow client, no
    second download: a second or two less per actor) and checked against its signature again before loading."""

    def __init__(self, shipped: mlflow_store.Shipped, factory, key: bytes, keep, probabilities, folder):
        self.model = mlflow_store.load_shipped(shipped, key=key, factory=factory)
        self.keep, self.probabilities, self.folder = keep, probabilities, folder

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return rows.score_frame(self.model, batch, keep=self.keep, probabilities=self.probabilities, folder=self.folder)


class PartScorer(Scorer):
    """An actor of a folder output's pool: its batches carry their row numbers, its failed rows go to files of
    their own (parts.keep_scored), and what it returns is what Ray Data's writer writes."""

    def __init__(self, shipped, factory, key, keep, probabilities, folder, failed_to: str, fs):
        super().__init__(shipped, factory, key, [rows.ROW, *keep], probabilities, folder)
        self.failed_to, self.fs = failed_to, fs

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return parts.keep_scored(super().__call__(batch), self.failed_to, self.fs)


def score(
    cfg: KilnConfig, ref: str, input_path: str, output_path: str, *, overwrite: bool = False, verbose: bool = False
) -> Scored:
    """Score every row of `input_path` with version `ref`, into `output_path`, a file or an object-store URI (+
    `.errors.parquet` when a row failed). Bad input (a missing file or feature column, an output that exists
    without `overwrite` or is of an unknown format, a version whose files changed) is a DataError or ConfigError
    before Ray starts."""
    if parts.is_folder(output_path):
        return score_to_folder(cfg, ref, input_path, parts.Folder.of(output_path, overwrite=overwrite), verbose)
    output = Target.of(output_path, overwrite=overwrite)
    job = prepared(cfg, ref, input_path)
    given = job.given
    runtime.start(cfg, verbose=verbose)
    started = time.perf_counter()
    counts = {"in": 0, "out": 0, "failed": 0}
    read = given.rows
    shown, first = started, None
    errors = output.errors
    try:
        with output.writer() as scored, errors.writer("parquet") as failed:
            for batch in scored_batches(cfg, job):
                good, bad = rows.numbered(batch, counts["in"])
                counts["in"] += batch.num_rows
                scored.write(good)
                failed.write(bad)
                counts["out"] += good.num_rows
                counts["failed"] += bad.num_rows
                first = first or (counts["in"], time.perf_counter() - started)
                if counts["in"] > first[0] and time.perf_counter() - shown >= PROGRESS_EVERY_S:  # not while loading
                    shown = time.perf_counter()
                    console.say(progress_line(counts["in"], read, shown - started, first))
        if counts["out"] + counts["failed"] != (counts["in"] if read is None else read):
            raise RuntimeError(
                f"rows in {read if read is not None else counts['in']} != rows out {counts['out']} + rows failed "
                f"{counts['failed']}; nothing was written"
            )
        output.commit()
        if counts["failed"]:
            errors.commit()
        else:
            errors.remove(errors.path)  # an older job's reasons would describe another output
    finally:
        output.remove(output.partial)
        errors.remove(errors.partial)
    result = Scored(
        counts["in"],
        counts["out"],
        counts["failed"],
        time.perf_counter() - started,
        output.shown,
        errors.shown if counts["failed"] else None,
    )
    record(cfg, job.name, job.version, given.source, result)
    return result


class Prepared(NamedTuple):
    name: str
    version: int
    factory: str | None
    key: bytes  # the signing key, read once
    shipped: mlflow_store.Shipped  # the verified version's files, for the actors
    given: inputs.Input
    keep: list[str]
    features: list[str]


def prepared(cfg: KilnConfig, ref: str, input_path: str) -> Prepared:
    """Everything checked before Ray starts: the version, verified and ready to ship, the input and the columns
    kept."""
    name, version = registry.resolve(cfg, ref)
    factory = checkpoint.trusted_factory(cfg.model)
    key = integrity.signing_key()
    try:
        model, shipped = mlflow_store.ship(cfg.tracking_uri, name, version, key=key, factory=factory)
    except integrity.IntegrityError as err:  # a version whose files changed: bad input, before Ray starts
        raise DataError(str(err)) from None
    types = model.preprocessing.types
    given = inputs.open_input(cfg, input_path, {f: types[f] for f in model.features})
    identifiers = [c for c in model.preprocessing.identifiers if c in given.columns]
    keep = list(cfg.score.keep) or identifiers or ([rows.PATH] if given.listing is not None else [])
    rows.check_columns(given.columns, model.features, keep, f"--input {input_path}")
    return Prepared(name, version, factory, key, shipped, given, keep, list(model.features))


def score_to_folder(cfg: KilnConfig, ref: str, input_path: str, folder: parts.Folder, verbose: bool) -> Scored:
    """`--output DIR/`: Ray Data's writer writes the part files where the actors run (parts.py)."""
    job = prepared(cfg, ref, input_path)
    given = job.given
    planned, total = parts.planned(given)  # the reads and the row count, from the footers (or the listing)
    runtime.start(cfg, verbose=verbose)
    started = time.perf_counter()
    folder.remove(folder.staging)  # an interrupted job's leftovers
    errors = folder.errors
    failed_to = f"{folder.staging}/{parts.FAILED}"
    try:
        folder.fs.create_dir(failed_to, recursive=True)
        columns = [*job.keep, *job.features]
        args = (
            job.shipped,
            job.factory,
            job.key,
            job.keep,
            cfg.score.probabilities,
            given.folder,
            failed_to,
            folder.fs,
        )
        numbered = lambda: parts.dataset(given, planned, columns, cfg.score.batch_size)  # noqa: E731
        scored = pooled(cfg, numbered, job.shipped, PartScorer, args, ordered=False)
        with progress(parts.Counted(folder), total, started):
            scored.write_parquet(folder.staging, filesystem=folder.fs)
        failed = parts.gathered(folder)
        written = parts.written_rows(folder)
        if written + failed.num_rows != total:
            raise RuntimeError(
                f"rows in {total} != rows out {written} + rows failed {failed.num_rows}; nothing was written"
            )
        folder.remove(f"{folder.staging}/{parts.FAILED}")
        if failed.num_rows:
            with errors.writer("parquet") as writer:
                writer.write(failed)
            errors.commit()
        else:
            errors.remove(errors.path)
        folder.commit()
    finally:
        folder.remove(folder.staging)
        errors.remove(errors.partial)
    result = Scored(
        total, written, failed.num_rows, time.perf_counter() - started, folder.shown,
        errors.shown if failed.num_rows else None,
    )  # fmt: skip
    record(cfg, job.name, job.version, given.source, result)
    return result


@contextlib.contextmanager
def progress(done, total: int, started: float):
    """While the body runs, a progress line at most every PROGRESS_EVERY_S from `done()` (the rows written so far,
    asked every second), its rate counted from the first rows seen: a folder output's rows never reach the driver,
    so their count comes from the files the actors wrote."""
    stop = threading.Event()

    def watch():
        first, shown = None, 0.0
        while not stop.wait(min(1.0, PROGRESS_EVERY_S)):
            try:
                rows_done, now = done(), time.perf_counter()
            except OSError:  # a listing that failed this time (a bucket's hiccup): no line, the job goes on
                continue
            if not rows_done:
                continue
            if first is None:  # the rate and the first line count from here, past the actors' start
                first, shown = (rows_done, now - started), now
            elif rows_done > first[0] and now - shown >= PROGRESS_EVERY_S:
                shown = now
                console.say(progress_line(rows_done, total, now - started, first))

    watcher = threading.Thread(target=watch, name="kiln-score-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def scored_batches(cfg: KilnConfig, job: Prepared):
    """The input's rows through the actor pool, in input order, a pyarrow Table at a time."""
    given = job.given
    args = (job.shipped, job.factory, job.key, job.keep, cfg.score.probabilities, given.folder)
    make = lambda: inputs.dataset(given, cfg.score.batch_size)  # noqa: E731
    scored = pooled(cfg, make, job.shipped, Scorer, args, ordered=True)
    yield from scored.iter_batches(batch_size=None, batch_format="pyarrow")


def pooled(cfg: KilnConfig, make, shipped: mlflow_store.Shipped, scorer, args: tuple, *, ordered: bool):
    """The dataset `make()` gives, through the pool of `scorer` actors (constructed with `args`), with the job's
    Ray Data options. They are set before `make` runs: a Dataset keeps the context it was made in (a dataset made
    first read with the v2 reader, in 128 MiB blocks and out of order, which the driver's numbering then got
    wrong)."""
    import ray

    context = ray.data.DataContext.get_current()
    # a file output: rows come out in input order (the driver numbers them); a folder's rows carry their numbers
    context.execution_options.preserve_order = ordered
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    # the CPUs free now, not the cluster's total: on a shared cluster an endpoint or another job holds some, and a
    # pool sized to the total would leave the reads nothing (they wait forever, and the actors with them)
    free = ray.available_resources()
    actor_cpus, most = pool_shape(free.get("CPU", 0.0), cfg.score.num_cpus, nodes)
    if cfg.score.num_gpus:  # no more actors than the free GPUs hold (the rest would wait for one forever)
        most = max(1, min(most, int(free.get("GPU", 0.0) / cfg.score.num_gpus + 1e-9)))
    console.say(
        f"  scoring with {shipped.name} v{shipped.version}: {most} actor{'s' if most > 1 else ''} of "
        f"{actor_cpus:g} CPU, each loading the version first"
    )
    # blocks of about a megabyte (Ray Data's default: 128 MiB): a file read whole (one parquet row group of a
    # million rows) still streams through the pool, shared by every actor, and the driver writes while the actors
    # score. (A repartition to a batch a block cost 1.3 s more per 250k rows.)
    context.target_max_block_size = BLOCK_BYTES
    # Ray Data 2.60's default parquet reader (datasource v2) starts 32 FooterReader actors to read footers and a
    # listing task of a whole CPU: 6 s of a 12 s job for one file on 2 cores, and a pool holding the CPUs hangs
    # it. The v1 reader plans its read tasks from the footers on the driver.
    context.use_datasource_v2 = False
    return make().map_batches(
        scorer,
        fn_constructor_args=args,
        batch_size=cfg.score.batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=most, initial_size=most),
        num_cpus=actor_cpus,
        num_gpus=cfg.score.num_gpus,
    )


def pool_shape(cpus: float, per_actor: float | None, nodes: int = 1) -> tuple[float, int]:
    """(CPUs an actor reserves, actors) from the `cpus` free when the job starts. One CPU stays free for Ray
    Data's read tasks (inputs.READ_CPUS each), or the actors would wait for blocks no task can start. `per_actor`
    None (score.num_cpus unset): on one machine an actor per CPU, all sharing what the free CPU leaves (2 CPUs:
    two of 0.5), so every core scores; on a cluster 1 CPU each. With less than two CPUs free the one actor
    reserves what is left past the free one (none on a 1-CPU runtime) and shares the core."""
    free = cpus - 1.0
    if per_actor is None:
        if nodes == 1 and cpus >= 2:
            whole = int(cpus + 1e-9)
            return round(free / whole, 4), whole
        per_actor = 1.0
    if free < per_actor:
        return (max(free, 0.0), 1)
    return per_actor, max(1, int(free // per_actor + 1e-9))


def record(cfg: KilnConfig, name: str, version: int, source: sources.Source, result: Scored) -> None:
    """An MLflow run in the version's experiment: which version scored which input into which file."""
    client = mlflow_runs.client(cfg)
    experiment = client.get_run(client.get_model_version(name, str(version)).run_id).info.experiment_id
    run = client.create_run(experiment, run_name=f"score-{name}-v{version}", tags={"kiln.kind": "score"})
    run_id = run.info.run_id
    for key, value in {
        "model": name,
        "version": version,
        "input": ",".join(source.paths)[:500],
        "input_fingerprint": sources.fingerprint(source),
        "output": str(result.output),
    }.items():
        client.log_param(run_id, key, value)
    for key, value in {
        "rows_in": result.rows_in,
        "rows_out": result.rows_out,
        "rows_failed": result.rows_failed,
        "seconds": result.seconds,
    }.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id)
    console.say(f"  recorded as MLflow run {run_id} (model {name} version {version})")
