"""The stage order of `kiln run`, readable as a table of contents."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from pipelines import (
    auth,
    baseline,
    checkpoint,
    console,
    data,
    deploy,
    evaluate,
    images,
    ingest,
    integrity,
    registry,
    runtime,
    storage,
    task,
    tracking,
)
from pipelines.config import KilnConfig
from pipelines.errors import ConfigError, DataError
from pipelines.plan.check import EpochCheck
from pipelines.record import RunRecord
from pipelines.report import tables
from pipelines.search import auto, ledger, progress, resources, trial_runs, tuner


@dataclass
class RunResult:
    parent_run_id: str
    search: tuner.SearchResult
    test: evaluate.TestReport
    registered: registry.Registered
    example: pd.DataFrame
    endpoint: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    baseline: baseline.Baseline | None = None

    @property
    def test_accuracy(self) -> float | None:
        return self.test.accuracy


def run(cfg: KilnConfig, *, serve: bool = True, verbose: bool = False, resume: bool = False) -> RunResult:
    storage.check_reachable(cfg)  # the ledger check_resume reads lives there
    integrity.signing_key()  # a key file that cannot be used fails now, not at registration
    if serve and cfg.serve.enabled:
        auth.read_token(cfg.serve)  # serve.auth: token without a token fails now, not after the search
    cfg = decide_space(decide_task(cfg))
    previous = check_resume(cfg, resume)
    preflight(cfg)
    timings: dict[str, float] = {}
    with console.stage("runtime", timings):
        runtime.start(cfg, verbose=verbose, env=deploy.ingress_env(cfg))
    with console.stage("ingest", timings):
        splits = ingest.ingest(cfg, say=console.say)
        console.say(ingest.describe(cfg, splits))
    epochs = EpochCheck.predict(
        cfg,
        input_dim=splits.input_dim,
        num_classes=splits.output_dim,
        train_rows=splits.num_rows["train"],
        slots=splits.preprocessing.slots,
        say=console.say,
    )
    with RunRecord(
        cfg, tags={"kiln.data_fingerprint": splits.fingerprint, **epochs.tags}, resume_from=previous if resume else None
    ) as record:
        inputs = record_inputs(cfg, splits, record, resume=resume)
        with console.stage("search", timings):
            result = tuner.search(
                cfg,
                splits,
                search_name=record.name,
                resume=resume,
                callbacks=[
                    trial_runs.trial_callback(cfg, record.run_id, epochs.tags, inputs[:2]),
                    progress.progress_callback(cfg.tune.metric, cfg.tune.mode, cfg.tune.num_samples, cfg.train.epochs),
                ],
            )
        record.search_done()
        console.say(tables.trials_table(result.trials, cfg.tune.metric, result.best.trial_id), *result.notes)
        metrics, line = epochs.compare(result.epoch_times_s)
        record.log_metrics(metrics)
        console.say(line)

        with console.stage("evaluate", timings):
            best_checkpoint = storage.local_checkpoint(cfg, result.best.best_checkpoint)
            test = evaluate.test_report(
                best_checkpoint,
                splits.test_frame,
                splits.test_y,
                factory=checkpoint.trusted_factory(cfg.model, own_run=True),
            )
            record.log_dict(test.to_dict(), "test_report.json")
            record.log_metrics({**test.metrics, f"best_{cfg.tune.metric}": result.best.best_metric})
            console.say(
                f"  best trial {result.best.trial_id}, epoch {result.best.best_epoch}: "
                f"{cfg.tune.metric}={result.best.best_metric:.4f}, {test.primary}={test.value:.4f}"
            )
            trees = fit_baseline(cfg, splits, record)
            if trees is not None:
                console.say(
                    f"  {test.primary}: network {test.value:.4f}, {trees.name} {trees.metrics[test.primary]:.4f}"
                )

        with console.stage("register", timings):
            registered = registry.register(
                cfg,
                checkpoint_dir=best_checkpoint,
                test_frame=splits.test_frame,
                test_labels=splits.test_labels,
                parent_run_id=record.run_id,
                test_value=test.value,
                data_fingerprint=splits.fingerprint,
                lineage=registry.lineage(cfg.tune.metric, result.best),
            )
            console.say(registered.describe(cfg.registry.alias))
            reported = {t.trial_id: [c.checkpoint for c in t.candidates] for t in result.trials}
            freed = storage.prune_checkpoints(cfg, reported, keep=result.best.trial_id)
            console.say(f"  pruned other trials' checkpoints ({freed / 2**20:.1f} MiB freed)")
        record.set_tags(
            {
                "kiln.best_trial_id": result.best.trial_id,
                "kiln.best_epoch": str(result.best.best_epoch),
                "mlflow.note.content": tables.search_note(cfg, result, test, registered, trees),
            }
        )
        record.log_metrics({f"stage_{k}_s": v for k, v in timings.items()})
    write_report(cfg, record.run_id)

    run_result = RunResult(record.run_id, result, test, registered, splits.example, timings=timings, baseline=trees)
    if serve and cfg.serve.enabled:
        with console.stage("serve", timings):
            run_result.endpoint = deploy.start_serving(cfg, registry.champion_ref(cfg))
    return run_result


def fit_baseline(cfg: KilnConfig, splits: ingest.Splits, record: RunRecord) -> baseline.Baseline | None:
    """The trees beside the network (data.baseline); a failure is said, never fatal to the run."""
    if not cfg.data.baseline:
        return None
    if "image" in splits.preprocessing.types.values():
        console.say(f"  baseline: {baseline.NO_IMAGE_BASELINE}")
        record.set_tags({"kiln.baseline": baseline.NO_IMAGE_BASELINE})
        return None
    train, label = splits.train_frame, cfg.data.label
    try:
        trees = baseline.fit_and_score(
            train.drop(columns=label),
            train[label].to_numpy(),
            splits.test_frame,
            splits.test_y,
            splits.preprocessing.types,
            task=cfg.task,
            labels=splits.preprocessing.labels,
            seed=cfg.data.split.seed,
        )
    except Exception as err:
        console.say(f"  baseline not fitted ({type(err).__name__}: {err})")
        return None
    record.log_metrics({**{f"baseline_{k}": v for k, v in trees.metrics.items()}, "baseline_fit_s": trees.fit_s})
    record.set_tags({"kiln.baseline": trees.name})
    return trees


def record_inputs(cfg: KilnConfig, splits: ingest.Splits, record: RunRecord, *, resume: bool) -> list:
    """The splits as MLflow dataset inputs, logged on the parent run ([train, val, test]; trials get the first
    two). Lineage is worth a note when it fails, never the run."""
    try:
        inputs = tracking.dataset_inputs(splits.frames(cfg.data.label), source=splits.source, label=cfg.data.label)
        if not resume:  # a resumed parent run has them already
            tracking.log_inputs(cfg, record.run_id, inputs)
        return inputs
    except Exception as err:
        console.say(f"  note: the splits were not recorded as MLflow datasets ({type(err).__name__}: {err})")
        return []


def decide_task(cfg: KilnConfig) -> KilnConfig:
    """The task, from data.task or the label column (read alone, without Ray), said when Kiln picked it."""
    resolved, note = task.resolve(cfg, data.label_column(cfg.data, cfg.storage_root))
    if note:
        console.say(f"  {note}")
    return resolved


def decide_space(cfg: KilnConfig, checked: data.Checked | None = None, *, say=console.say) -> KilnConfig:
    """`tune.search_space: auto` built from the data's columns (read without Ray, before anything starts), said
    in one line; a written space passes as it is."""
    if not auto.is_auto(cfg.tune.search_space):
        return cfg
    checked = checked or data.inspect(cfg.data, cfg.storage_root)
    resolved = cfg.with_space(
        checked.types, rows=len(checked.frame), colour=has_colour(checked), text_words=text_words(checked)
    )
    say("  search space (auto): " + "; ".join(f"{k} {v}" for k, v in resolved.tune.search_space.items()))
    return resolved


def text_words(checked: data.Checked) -> int:
    """The 90th-percentile word count of the longest text column (0 without text)."""
    columns = [name for name, kind in checked.types.items() if kind == "text"]
    counts = [checked.frame[name].dropna().astype(str).str.split().str.len().quantile(0.9) for name in columns]
    return int(max((c for c in counts if c == c), default=0))


def has_colour(checked: data.Checked) -> bool:
    """Any image column holding colour images, from its first files."""
    columns = [name for name, kind in checked.types.items() if kind == "image"]
    return any(images.describe(checked.frame[name].dropna())[1] == 3 for name in columns)


def preflight(cfg: KilnConfig) -> None:
    """Checks that need no cluster: a trial that can never fit fails here, before anything starts."""
    if cfg.ray.address is None:
        resources.max_concurrent_trials(cfg, cluster_cpus=runtime.local_cpus(cfg), cluster_gpus=runtime.local_gpus())


def check_resume(cfg: KilnConfig, resume: bool) -> ledger.SearchState | None:
    """--resume needs an interrupted search of the same config; a plain run says when it leaves one behind."""
    previous = ledger.latest(cfg)
    if not resume:
        if ledger.unfinished(previous):
            console.say(
                f"note: search {previous.name} did not finish; this starts a new search "
                "(add --resume to continue that one instead)"
            )
        return previous
    if not ledger.unfinished(previous):
        raise ConfigError(
            f"--resume: no unfinished search of {cfg.name!r} under "
            f"{storage.shown(cfg.storage.root)}; "
            "run without --resume to start one"
        )
    if previous.status == ledger.FAILED:
        console.say(
            f"  search {previous.name} finished but a later stage failed; evaluating and registering from its trials"
        )
    if previous.holder_alive():
        raise ConfigError(
            f"--resume: search {previous.name} is still running (pid {previous.pid} on "
            f"{previous.host}); wait for it, or stop it with Ctrl-C and resume then"
        )
    if previous.config_hash != ledger.config_hash(cfg):
        raise ConfigError(
            f"--resume: the config changed since search {previous.name} started; "
            "run without --resume to start a new search"
        )
    check_signed(cfg, previous.name)
    console.say(f"  resuming search {previous.name} (MLflow run {previous.parent_run_id})")
    return previous


def check_signed(cfg: KilnConfig, search_name: str) -> None:
    """Every file of the search that Tune would unpickle is one the search saved and signed (exit 2 otherwise)."""
    from pipelines.search import signing

    signature = signing.SearchSignature.of(cfg, search_name)
    try:
        signature.check()
    except integrity.IntegrityError as err:
        raise DataError(str(err)) from None


def write_report(cfg: KilnConfig, parent_run_id: str) -> None:
    """The HTML report; a failure here is reported, never fatal to a finished run."""
    from pipelines.report import page

    try:
        console.say(f"  report: {page.build(cfg, parent_run_id)}")
    except Exception as err:
        console.say(f"  report not written ({type(err).__name__}: {err}); retry with: kiln report {parent_run_id}")
