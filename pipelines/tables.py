"""`kiln runs` and `kiln models`: the store at a glance, as terminal tables."""

from __future__ import annotations

import time

from pipelines import tracking
from pipelines.config import KilnConfig


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "-"


def _duration(start_ms: int | None, end_ms: int | None) -> str:
    if not start_ms:
        return "-"
    seconds = ((end_ms or time.time() * 1000) - start_ms) / 1000
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def runs_table(cfg: KilnConfig, limit: int = 20) -> str:
    client = tracking.client(cfg)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="tags.`kiln.kind` = 'search'",
                              order_by=["attributes.start_time DESC"], max_results=limit) if experiments else []
    rows = []
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        best = next((f"{k.removeprefix('best_')}={v:.4f}" for k, v in metrics.items() if k.startswith("best_")), "-")
        version = tags.get("kiln.model_version")
        model = run.data.params.get("registry.model_name", "")
        rows.append([run.info.run_name, run.info.status.lower(), best,
                     f"{metrics['test_accuracy']:.4f}" if "test_accuracy" in metrics else "-",
                     _duration(run.info.start_time, run.info.end_time),
                     f"{model} v{version}" if version else "-", run.info.run_id])
    if not rows:
        return f"no runs in {cfg.tracking_uri}; start one with 'kiln run CONFIG'"
    return format_table(["run", "status", "best", "test_accuracy", "duration", "registered", "run id"], rows)


def models_table(cfg: KilnConfig) -> str:
    client = tracking.client(cfg)
    rows = []
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        aliases = ", ".join(f"{alias}=v{version}" for alias, version in sorted(model.aliases.items())) or "-"
        by_alias = {str(v) for v in model.aliases.values()}
        shown = [v for v in versions if str(v.version) in by_alias] or versions[:1]
        metric = ", ".join(f"v{v.version} {float(v.tags['test_accuracy']):.4f}" for v in shown
                           if "test_accuracy" in v.tags) or "-"
        rows.append([model.name, str(len(versions)), aliases, metric, _when(model.creation_timestamp)])
    if not rows:
        return f"no registered models in {cfg.tracking_uri}; start one with 'kiln run CONFIG'"
    return format_table(["model", "versions", "aliases", "test_accuracy", "created"], rows)
