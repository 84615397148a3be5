"""The stage order of `kiln run`, readable as a table of contents."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines import console, deploy
from pipelines.cluster import runtime, storage
from pipelines.config import KilnConfig, check_column_encoders
from pipelines.data import images, ingest, preprocessing, pretrained, sources, task
from pipelines.data.preprocessing import plain
from pipelines.errors import ConfigError, DataError
from pipelines.model import baseline, candidates, checkpoint, evaluate
from pipelines.model.inference import InferenceModel
from pipelines.plan.check import EpochCheck
from pipelines.record import RunRecord
from pipelines.report import tables
from pipelines.search import auto, ledger, progress, resources, scheduler, trial_runs, tuner
from pipelines.tracking import integrity, mlflow_runs, registry


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
    choice: candidates.Choice | None = None

    @property
    def test_accuracy(self) -> float | None:
        return self.test.accuracy


def run(cfg: KilnConfig, *, serve: bool = True, verbose: bool = False, resume: bool = False) -> RunResult:
    cfg, previous = check_before_start(cfg, serve=serve, resume=resume)
    timings: dict[str, float] = {}
    with console.stage("runtime", timings):
        runtime.start(cfg, verbose=verbose, env=deploy.ingress_env(cfg))
    with console.stage("ingest", timings):
        splits = ingest.ingest(cfg, say=console.say)
        console.say(ingest.describe(cfg, splits))
    epochs = predict_epochs(cfg, splits)
    texts = ",".join(e.name for e in splits.preprocessing.encoders if e.type == "text")
    tags = {
        "kiln.data_fingerprint": splits.fingerprint,
        **({"kiln.text_columns": texts} if texts else {}),
        **epochs.tags,
    }
    with RunRecord(cfg, tags=tags, resume_from=previous if resume else None) as record:
        inputs = record_inputs(cfg, splits, record, resume=resume)
        with console.stage("search", timings):
            result = search(cfg, splits, record, epochs, inputs, resume=resume)
        compare_epochs(epochs, result, record)
        with console.stage("evaluate", timings):
            best_checkpoint = storage.local_checkpoint(cfg, result.best.best_checkpoint)
            test = evaluate_best(cfg, splits, record, result, best_checkpoint)
            trees = fit_baseline(cfg, splits, record)
            if trees is not None:
                console.say(
                    f"  {test.primary}: network {test.value:.4f}, {trees.name} {trees.metrics[test.primary]:.4f}"
                )
            choice = choose_candidate(cfg, splits, record, best_checkpoint, trees, test)
        with console.stage("register", timings):
            registered = register(cfg, splits, record, result, test, best_checkpoint, choice, trees)
        record.set_tags(
            {
                "kiln.best_trial_id": result.best.trial_id,
                "kiln.best_epoch": str(result.best.best_epoch),
                "mlflow.note.content": tables.search_note(cfg, result, test, registered, trees, choice),
            }
        )
        record.log_metrics({f"stage_{k}_s": v for k, v in timings.items()})
    write_report(cfg, record.run_id)
    run_result = RunResult(
        record.run_id, result, test, registered, splits.example, timings=timings, baseline=trees, choice=choice
    )
    if serve and cfg.serve.enabled:
        with console.stage("serve", timings):
            run_result.endpoint = deploy.start_serving(cfg, registry.champion_ref(cfg))
    return run_result


def check_before_start(cfg: KilnConfig, *, serve: bool, resume: bool) -> tuple[KilnConfig, ledger.SearchState | None]:
    """Everything that can fail before a runtime starts: the store, the signing key, the serving token, the task,
    the search space, the search to resume. The config with its task and space decided, and the saved search."""
    storage.check_reachable(cfg)  # the ledger check_resume reads lives there
    integrity.signing_key()  # a key file that cannot be used fails now, not at registration
    if serve and cfg.serve.enabled:
        deploy.check_token(cfg)  # serve.auth: token without a token fails now, not after the search
    cfg = decide_space(decide_task(cfg))
    previous = check_resume(cfg, resume)
    preflight(cfg)
    return cfg, previous


def predict_epochs(cfg: KilnConfig, splits: ingest.Splits) -> EpochCheck:
    """kiln plan's epoch time for this data and search, said now and checked against the search's measured one."""
    return EpochCheck.predict(
        cfg,
        input_dim=splits.input_dim,
        num_classes=splits.output_dim,
        train_rows=splits.num_rows["train"],
        slots=splits.preprocessing.slots,
        say=console.say,
    )


def search(
    cfg: KilnConfig, splits: ingest.Splits, record: RunRecord, epochs: EpochCheck, inputs: list, *, resume: bool
) -> tuner.SearchResult:
    """The Tune search, each trial its own MLflow run under the parent, its progress said as it goes; then the
    trials' table."""
    result = tuner.search(
        cfg,
        splits,
        search_name=record.name,
        resume=resume,
        callbacks=[
            trial_runs.trial_callback(cfg, record.run_id, epochs.tags, inputs[:2]),
            progress.progress_callback(
                cfg.tune.metric,
                cfg.tune.mode,
                cfg.tune.num_samples,
                cfg.train.epochs,
                copies=cfg.tune.scheduler.name == "pbt",
            ),
        ],
    )
    record.search_done()
    console.say(tables.trials_table(result.trials, cfg.tune.metric, result.best.trial_id), *result.notes)
    if cfg.tune.scheduler.name == "pbt":  # who copied whom, for the report (which reads MLflow alone)
        copies = scheduler.read_lineage(
            storage.read_text(cfg, storage.search_file(cfg, record.name, scheduler.LINEAGE_FILE))
        )
        if copies:
            record.log_dict({"copies": copies}, "pbt_lineage.json")
    return result


def compare_epochs(epochs: EpochCheck, result: tuner.SearchResult, record: RunRecord) -> None:
    metrics, line = epochs.compare(result.epoch_times_s)
    record.log_metrics(metrics)
    console.say(line)


def evaluate_best(
    cfg: KilnConfig, splits: ingest.Splits, record: RunRecord, result: tuner.SearchResult, best_checkpoint
) -> evaluate.TestReport:
    """The best trial's checkpoint scored on the test split, logged on the parent run and said."""
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
    return test


def choose_candidate(
    cfg: KilnConfig,
    splits: ingest.Splits,
    record: RunRecord,
    best_checkpoint,
    trees: baseline.Baseline | None,
    test: evaluate.TestReport,
) -> candidates.Choice:
    """registry.candidates, each scored on the val split (the blend's weight fitted there); their test metrics
    are logged and said, and decide nothing. Without a baseline (images, a failed fit) or val rows, the network
    is the only candidate, and the run says why when others were asked for."""
    fitted = trees.fitted if trees is not None else None
    val = splits.val_frame
    alone = None
    if "image" in splits.preprocessing.types.values():
        alone = "images have no baseline"
    elif fitted is None:
        alone = "no baseline was fitted"
    elif len(val) == 0:
        alone = "no val rows to choose on"
    if alone or cfg.registry.candidates == ["network"]:
        choice = candidates.network_alone(test.metrics)
        if alone and cfg.registry.candidates != ["network"]:
            console.say(f"  registered candidate: network, the only one ({alone})")
        record.set_tags({"kiln.candidate": choice.winner.name})
        return choice
    model = InferenceModel(best_checkpoint, factory=checkpoint.trusted_factory(cfg.model, own_run=True))

    def truth(values) -> np.ndarray:
        if model.preprocessing.regression:
            return np.asarray(values, dtype=np.float64)
        return model.preprocessing.encode(pd.Series([plain(v) for v in values], dtype=object))

    def outputs(frame: pd.DataFrame) -> tuple:
        rows = frame[model.features]
        return model.outputs(rows), fitted.outputs(rows)

    choice = candidates.choose(
        cfg.registry.candidates,
        cfg.task,
        candidates.task_metric(cfg.tune.metric, cfg.task),
        val=(*outputs(val), truth(val[cfg.data.label])),
        test=(*outputs(splits.test_frame), truth(splits.test_y)),
    )
    record.log_metrics(choice.metrics())
    record.set_tags({"kiln.candidate": choice.winner.name})
    console.say(f"  {choice.line()}")
    return choice


def register(
    cfg: KilnConfig,
    splits: ingest.Splits,
    record: RunRecord,
    result: tuner.SearchResult,
    test: evaluate.TestReport,
    best_checkpoint,
    choice: candidates.Choice,
    trees: baseline.Baseline | None,
) -> registry.Registered:
    """The winning candidate as a registry version (the alias moved by registry.promote, on its test metric),
    other trials' checkpoints pruned."""
    winner = choice.winner
    registered = registry.register(
        cfg,
        checkpoint_dir=best_checkpoint,
        test_frame=splits.test_frame,
        test_labels=splits.test_labels,
        parent_run_id=record.run_id,
        test_value=winner.test.get(test.primary.removeprefix("test_"), test.value),
        data_fingerprint=splits.fingerprint,
        lineage=registry.lineage(cfg.tune.metric, result.best),
        candidate={"name": winner.name, "weight": winner.weight},
        baseline=trees.fitted if trees is not None else None,
    )
    console.say(registered.describe(cfg.registry.alias))
    reported = {t.trial_id: [c.checkpoint for c in t.candidates] for t in result.trials}
    freed = storage.prune_checkpoints(cfg, reported, keep=result.best.trial_id)
    console.say(f"  pruned other trials' checkpoints ({freed / 2**20:.1f} MiB freed)")
    return registered


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
        inputs = mlflow_runs.dataset_inputs(splits.frames(cfg.data.label), source=splits.source, label=cfg.data.label)
        if not resume:  # a resumed parent run has them already
            mlflow_runs.log_inputs(cfg, record.run_id, inputs)
        return inputs
    except Exception as err:
        console.say(f"  note: the splits were not recorded as MLflow datasets ({type(err).__name__}: {err})")
        return []


def plan(cfg: KilnConfig, *, workers: list[int], hardware: str, say=console.say) -> dict:
    """`kiln plan`: the data checked and the task and space decided as `run` decides them, then each worker
    count's predicted step, epoch and search time on `hardware` ("local": calibrated on this machine)."""
    from pipelines.plan import calibrate, cost, flops, shapes
    from pipelines.plan import hardware as profiles

    checked = sources.inspect(cfg.data, cfg.storage_root)
    cfg = decide_space(for_task(cfg, checked.task), checked, say=say)
    check_column_encoders(cfg, checked.types)
    frame = checked.frame
    num_classes = frame[cfg.data.label].nunique() if cfg.task == "classification" else 1  # the output width
    train_rows = sources.split_counts(len(frame), cfg.data.split)[0]
    # The encoded width (one-hot levels, missing columns) as ingest will fit it; all rows are close enough here.
    prep = preprocessing.fit(
        frame,
        checked.types,
        frame[cfg.data.label],
        **preprocessing.sizes(cfg.data),
        backbones=pretrained.columns(cfg.model, checked.types, cfg.train.finetune),
        task=cfg.task,
        train_labels=frame[cfg.data.label],
    )
    width = prep.width
    local = hardware == "local"
    samples = [s for s in shapes.shape_samples(cfg) if s]
    if local:
        more = f", then the search's {len(samples)} model shapes" if samples else ""
        console.note(f"calibrating this machine on the model's own shapes{more} (a few seconds each) ...")
        profile = calibrate.calibrate_local(cfg, width, num_classes, slots=prep.slots)
    else:
        profile = profiles.load_profile(hardware)
    priced = [
        (
            s,
            calibrate.for_shape(profile, cfg.with_sample(s), width, num_classes, slots=prep.slots)
            if local
            else profile,
        )
        for s in samples
    ]
    concurrency = resources.max_concurrent_trials(cfg, cluster_cpus=runtime.local_cpus(cfg), cluster_gpus=0)
    result = cost.plan(
        cfg,
        profile=profile,
        workers=workers,
        input_dim=width,
        num_classes=num_classes,
        train_rows=train_rows,
        max_concurrent=concurrency,
        slots=prep.slots,
        shapes=priced,
    )
    result["inputs"] = flops.input_tables(prep.encoders, cfg)
    result["pretrained"] = [flops.embedding_pass(e, frame[e.name], timed=local) for e in prep.encoders if e.frozen]
    return result


def for_task(cfg: KilnConfig, task: str) -> KilnConfig:
    """The config with the data's task decided (a tune.metric of the other task is a ConfigError)."""
    try:
        return cfg.for_task(task)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def decide_task(cfg: KilnConfig) -> KilnConfig:
    """The task, from data.task or the label column (read alone, without Ray), said when Kiln picked it."""
    resolved, note = task.resolve(cfg, sources.label_column(cfg.data, cfg.storage_root))
    if note:
        console.say(f"  {note}")
    return resolved


def decide_space(cfg: KilnConfig, checked: sources.Checked | None = None, *, say=console.say) -> KilnConfig:
    """`tune.search_space: auto` built from the data's columns (read without Ray, before anything starts), said
    in one line; a written space passes as it is."""
    if not auto.is_auto(cfg.tune.search_space):
        return cfg
    checked = checked or sources.inspect(cfg.data, cfg.storage_root)
    # A pretrained text column reaches the network as a vector of numbers: no text encoder's keys to search.
    seen = {
        name: "number" if kind == "text" and cfg.model.for_column(name).text_encoder == "pretrained" else kind
        for name, kind in checked.types.items()
    }
    resolved = cfg.with_space(seen, rows=len(checked.frame), colour=has_colour(checked), text_words=text_words(checked))
    say("  search space (auto): " + "; ".join(f"{k} {v}" for k, v in resolved.tune.search_space.items()))
    return resolved


def text_words(checked: sources.Checked) -> int:
    """The 90th-percentile word count of the longest text column (0 without text)."""
    columns = [name for name, kind in checked.types.items() if kind == "text"]
    counts = [checked.frame[name].dropna().astype(str).str.split().str.len().quantile(0.9) for name in columns]
    return int(max((c for c in counts if c == c), default=0))


def has_colour(checked: sources.Checked) -> bool:
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
