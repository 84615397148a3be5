"""`kiln runs` and `kiln models`: the store at a glance, as terminal tables."""

from __future__ import annotations

import time

from pipelines import console
from pipelines.config import KilnConfig
from pipelines.console import describe_sample
from pipelines.model import baseline
from pipelines.tracking import mlflow_runs


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "-"


def _duration(start_ms: int | None, end_ms: int | None) -> str:
    if not start_ms:
        return "-"
    seconds = ((end_ms or time.time() * 1000) - start_ms) / 1000
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def runs_table(cfg: KilnConfig, limit: int = 20) -> str:
    client = mlflow_runs.client(cfg)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = (
        client.search_runs(
            experiments,
            filter_string="tags.`kiln.kind` = 'search'",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
        if experiments
        else []
    )
    rows = []
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        best = next((f"{k.removeprefix('best_')}={v:.4f}" for k, v in metrics.items() if k.startswith("best_")), "-")
        version = tags.get("kiln.model_version")
        model = run.data.params.get("registry.model_name", "")
        test = next(
            (f"{k.removeprefix('test_')}={metrics[k]:.4f}" for k in ("test_accuracy", "test_rmse") if k in metrics), "-"
        )
        rows.append(
            [
                run.info.run_name,
                run.info.status.lower(),
                best,
                test,
                _duration(run.info.start_time, run.info.end_time),
                f"{model} v{version}" if version else "-",
                run.info.run_id,
            ]
        )
    if not rows:
        return f"no runs in {cfg.tracking_uri}; start one with 'kiln run CONFIG'"
    return console.table(["run", "status", "best", "test", "duration", "registered", "run id"], rows)


def models_table(cfg: KilnConfig) -> str:
    client = mlflow_runs.client(cfg)
    rows = []
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        aliases = ", ".join(f"{alias}=v{version}" for alias, version in sorted(model.aliases.items())) or "-"
        by_alias = {str(v) for v in model.aliases.values()}
        shown = [v for v in versions if str(v.version) in by_alias] or versions[:1]
        metric = (
            ", ".join(
                f"v{v.version} {name.removeprefix('test_')}={float(v.tags[name]):.4f}"
                for v in shown
                if (name := v.tags.get("test_metric", "test_accuracy")) in v.tags
            )
            or "-"
        )
        rows.append([model.name, str(len(versions)), aliases, metric, _when(model.creation_timestamp)])
    if not rows:
        return f"no registered models in {cfg.tracking_uri}; start one with 'kiln run CONFIG'"
    return console.table(["model", "versions", "aliases", "test", "created"], rows)


def trials_table(trials, metric: str, best_id: str) -> str:
    """One line per trial; `best` is the epoch whose checkpoint holds `metric` (ties: the later epoch)."""
    header = f"  {'trial':<12} {'epochs':>6} {'best':>4} {metric:>14}  {'stopped early':<13} config"
    lines = [header]
    for t in trials:
        value = f"{t.best_metric:.4f}" if t.best_metric is not None else "-"
        state = "error" if t.error else ("yes" if t.stopped_early else "no")
        mark = "*" if t.trial_id == best_id else " "
        best_epoch = "-" if t.best_epoch is None else str(t.best_epoch)
        lines.append(
            f"{mark} {t.trial_id:<12} {t.epochs_run:>6} {best_epoch:>4} {value:>14}  {state:<13} "
            f"{describe_sample(t.sample)}"
        )
    return "\n".join(lines)


def search_note(cfg: KilnConfig, result, test, registered, trees=None, choice=None) -> str:
    """The parent run's description in the MLflow UI: the search in a few lines (a SearchResult, its
    evaluate.TestReport, Registered, the baseline's score when there is one, and which registry.candidates
    model was registered)."""
    stopped = sum(t.stopped_early for t in result.trials)
    epochs = sum(t.epochs_run for t in result.trials)
    return (
        f"{len(result.trials)} trials ({stopped} stopped early by {cfg.tune.scheduler.name}), "
        f"{epochs} trial-epochs of {len(result.trials) * cfg.train.epochs} possible.\n"
        f"Best: trial {result.best.trial_id} (epoch {result.best.best_epoch}), "
        f"{cfg.tune.metric}={result.best.best_metric:.4f}, "
        f"{describe_sample(result.best.sample)}; {test.primary}={test.value:.4f}"
        + (f" ({trees.name} on the same splits: {trees.metrics[test.primary]:.4f})" if trees else "")
        + ".\n"
        + (f"Note: {loss}.\n" if (loss := baseline.verdict(test.primary, test.value, trees)) else "")
        + (
            f"Candidates on val: {choice.line().removeprefix('registered candidate: ')}; on test: "
            f"{choice.test_line()}.\n"
            if choice is not None and choice.runners_up
            else ""
        )
        + f"Registered {registered.name} v{registered.version}; "
        f"{'promoted' if registered.promoted else 'not promoted'}: {registered.reason}."
    )
