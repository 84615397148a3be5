"""The run report: one self-contained HTML page (plots embedded), rebuilt from MLflow alone.

`collect` reads MLflow; `render_html` is a pure function of what it read.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import KilnConfig
from pipelines.model import baseline
from pipelines.model.baseline import NAME as TREES
from pipelines.search import scheduler
from pipelines.search.ranking import best_epoch
from pipelines.tracking import mlflow_runs


@dataclass
class TrialData:
    trial_id: str
    params: dict[str, str]
    history: list[tuple[int, float]]  # (epoch, tune.metric)
    status: str

    @property
    def epochs_run(self) -> int:
        return max((epoch for epoch, _ in self.history), default=0)


@dataclass
class ReportData:
    run_name: str
    run_id: str
    status: str
    metric: str
    mode: str
    max_epochs: int
    scheduler: str
    grace_period: int
    reduction_factor: float
    trials: list[TrialData]
    best_trial_id: str | None = None
    test: dict[str, Any] | None = None
    stages_s: dict[str, float] = field(default_factory=dict)
    predicted_epoch_s: float | None = None
    measured_epoch_s: float | None = None
    model_version: str | None = None
    promotion: str | None = None
    baseline: dict[str, float] = field(default_factory=dict)  # test_<metric> of the gradient-boosted trees
    baseline_name: str = TREES
    text_columns: list[str] = field(default_factory=list)  # the data's text columns: the trials table says how
    # each trial encoded them
    lineage: list[dict] = field(default_factory=list)  # pbt: each copy (scheduler.read_lineage), in order
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)  # registry.candidates: name ->
    # {val_<metric>, test_<metric>} from the parent's candidate_* metrics
    candidate: str | None = None  # the registered one

    @property
    def trial_epochs(self) -> int:
        return sum(t.epochs_run for t in self.trials)

    @property
    def full_trial_epochs(self) -> int:
        return len(self.trials) * self.max_epochs

    @property
    def rungs(self) -> list[int]:
        """The epochs at which ASHA judged trials (scheduler.asha_rungs, each at the first epoch past it)."""
        if self.scheduler not in ("asha", "asha_promote"):
            return []
        milestones = scheduler.asha_rungs(
            min(self.grace_period, self.max_epochs), self.reduction_factor, self.max_epochs
        )
        return sorted({math.ceil(r) for r in milestones})

    def varied_params(self) -> list[str]:
        keys = sorted({k for t in self.trials for k in t.params})
        return [k for k in keys if len({t.params.get(k) for t in self.trials}) > 1]


def collect(cfg: KilnConfig, run_id: str) -> ReportData:
    client = mlflow_runs.client(cfg)
    parent = client.get_run(run_id)
    params, metrics, tags = parent.data.params, parent.data.metrics, parent.data.tags
    metric = params.get("tune.metric", cfg.tune.metric)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000
    )
    trials = []
    for child in sorted(children, key=lambda r: r.data.tags.get("kiln.trial_id", "")):
        history = {m.step: m.value for m in client.get_metric_history(child.info.run_id, metric)}
        trials.append(
            TrialData(
                child.data.tags.get("kiln.trial_id", child.info.run_name),
                dict(child.data.params),
                sorted(history.items()),
                child.info.status,
            )
        )
    test = None
    try:
        test = json.loads(Path(client.download_artifacts(run_id, "test_report.json")).read_text())
    except Exception:  # a run that stopped before evaluating
        pass
    lineage = []
    if params.get("tune.scheduler.name") == "pbt":
        try:
            lineage = scheduler.read_lineage(Path(client.download_artifacts(run_id, "pbt_lineage.json")).read_text())
        except Exception:  # no trial copied another
            pass
    return ReportData(
        run_name=parent.info.run_name,
        run_id=run_id,
        status=parent.info.status,
        metric=metric,
        mode=params.get("tune.mode", cfg.tune.mode),
        max_epochs=int(params.get("train.epochs", cfg.train.epochs)),
        scheduler=params.get("tune.scheduler.name", cfg.tune.scheduler.name),
        grace_period=int(params.get("tune.scheduler.grace_period", cfg.tune.scheduler.grace_period)),
        reduction_factor=float(params.get("tune.scheduler.reduction_factor", cfg.tune.scheduler.reduction_factor)),
        trials=trials,
        best_trial_id=tags.get("kiln.best_trial_id"),
        test=test,
        stages_s={k.removeprefix("stage_").removesuffix("_s"): v for k, v in metrics.items() if k.startswith("stage_")},
        predicted_epoch_s=metrics.get("plan_predicted_epoch_time_s"),
        measured_epoch_s=metrics.get("measured_median_epoch_time_s"),
        model_version=tags.get("kiln.model_version"),
        promotion=tags.get("kiln.promotion"),
        baseline={k.removeprefix("baseline_"): v for k, v in metrics.items() if k.startswith("baseline_test_")},
        baseline_name=tags.get("kiln.baseline", TREES),
        text_columns=[c for c in tags.get("kiln.text_columns", "").split(",") if c],
        lineage=lineage,
        candidates=candidate_metrics(metrics),
        candidate=tags.get("kiln.candidate"),
    )


def candidate_metrics(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """The parent run's candidate_<name>_<split>_<metric> metrics as {name: {<split>_<metric>: value}}."""
    found: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if key.startswith("candidate_"):
            name, _, rest = key.removeprefix("candidate_").partition("_")
            found.setdefault(name, {})[rest] = value
    return found


def build(cfg: KilnConfig, run_id: str) -> Path:
    """Write the report under storage.root/reports and attach it to the parent run."""
    data = collect(cfg, run_id)
    path = cfg.storage_root / "reports" / f"{data.run_name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data))
    mlflow_runs.client(cfg).log_artifact(run_id, str(path))
    return path


# --- rendering (pure) -----------------------------------------------------------------------------


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def plot_trials(data: ReportData) -> str:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for rung in data.rungs:
        ax.axvline(rung, color="#bbb", linestyle=":", linewidth=1)
    for trial in data.trials:
        if not trial.history:
            continue
        epochs, values = zip(*trial.history, strict=True)
        best = trial.trial_id == data.best_trial_id
        (line,) = ax.plot(
            epochs,
            values,
            marker=".",
            linewidth=2.5 if best else 1.2,
            label=trial.trial_id + (" (best)" if best else ""),
        )
        if trial.epochs_run < data.max_epochs:  # stopped early by the scheduler
            ax.plot(epochs[-1], values[-1], marker="x", markersize=10, color=line.get_color())
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=data.metric, title=f"{data.metric} by epoch (x = stopped early, : = ASHA rungs)")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def search_order(data: ReportData) -> list[tuple[int, float, float]]:
    """Each trial in the order the search made it (its id's number): (order, its best value, the best of the trials
    so far). Whether the search learned shows as later trials scoring near or past the best so far."""
    points, best_so_far = [], None
    for order, trial in enumerate(data.trials, start=1):
        best = best_epoch(trial.history, data.mode)
        if best is None:
            continue
        value = best[1]
        better = best_so_far is None or (value > best_so_far if data.mode == "max" else value < best_so_far)
        best_so_far = value if better else best_so_far
        points.append((order, value, best_so_far))
    return points


def plot_search(data: ReportData) -> str:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = search_order(data)
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="#4477aa", label="trial's best epoch")
    ax.step([p[0] for p in points], [p[2] for p in points], where="post", color="#228833", label="best so far")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="trial, in the order the search made it", ylabel=data.metric, title=f"{data.metric} by trial order")
    ax.legend(fontsize=7)
    return _png(fig)


def plot_lineage(data: ReportData) -> str:
    """pbt's population: each trial a row over the epochs it ran, and an arrow for each copy, from the trial whose
    checkpoint was copied to the trial that copied it, at the copied epoch."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {t.trial_id: i for i, t in enumerate(data.trials)}
    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(rows) + 1.2))
    for trial in data.trials:
        ax.plot([0, trial.epochs_run], [rows[trial.trial_id]] * 2, color="#bbb", linewidth=6, solid_capstyle="butt")
    for copy in data.lineage:
        if copy["trial"] in rows and copy["copied"] in rows:
            start, end = rows[copy["copied"]], rows[copy["trial"]]
            ax.annotate(
                "", xy=(copy["epoch"], end), xytext=(copy["epoch"], start), arrowprops={"arrowstyle": "->", "lw": 1.5}
            )
    ax.set_yticks(list(rows.values()), list(rows))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="epoch", title="pbt lineage: an arrow from the trial copied to the trial that copied it")
    return _png(fig)


def plot_confusion(test: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, matrix = test["labels"], test["confusion"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(labels))
    ax.set_xticks(ticks, [str(v) for v in labels], fontsize=7)
    ax.set_yticks(ticks, [str(v) for v in labels], fontsize=7)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=f"test confusion matrix (accuracy {test['accuracy']:.3f})")
    return _png(fig)


def plot_roc(test: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], color="#bbb", linestyle=":", linewidth=1)
    for label, (fpr, tpr) in test["roc"].items():
        ax.plot(fpr, tpr, linewidth=1.5, label=label if len(test["roc"]) > 1 else None)
    if len(test["roc"]) > 1:
        ax.legend(fontsize=7, title="one vs rest")
    auc = test_metrics(test).get("test_auc")
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="test ROC" + (f" (AUC {auc:.3f})" if auc is not None else ""),
    )
    return _png(fig)


def plot_regression(test: dict[str, Any]) -> str:
    """Predicted against actual, and the residuals against the prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    actual, predicted = test["points"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    low, high = min(min(actual), min(predicted)), max(max(actual), max(predicted))
    left.plot([low, high], [low, high], color="#bbb", linestyle=":", linewidth=1)
    left.scatter(actual, predicted, s=6, alpha=0.6)
    rmse = test_metrics(test).get("test_rmse")
    left.set(
        xlabel="actual",
        ylabel="predicted",
        title="test: predicted vs actual" + (f" (RMSE {rmse:.4g})" if rmse is not None else ""),
    )
    right.axhline(0, color="#bbb", linestyle=":", linewidth=1)
    right.scatter(predicted, [p - a for a, p in zip(actual, predicted, strict=True)], s=6, alpha=0.6)
    right.set(xlabel="predicted", ylabel="predicted - actual", title="test residuals")
    return _png(fig)


def baseline_verdict(data: ReportData) -> str | None:
    """baseline.verdict on the report's figures: said when the baseline scored better on the test split."""
    if not (data.test and data.baseline):
        return None
    network = test_metrics(data.test)
    primary = next((m for m in ("test_accuracy", "test_rmse") if m in network and m in data.baseline), None)
    if primary is None:
        return None
    scored = baseline.Baseline(data.baseline, 0.0, data.baseline_name)
    return baseline.verdict(primary, network[primary], scored)


def test_metrics(test: dict[str, Any]) -> dict[str, float]:
    """A test_report.json's metrics (reports from before regression held only the accuracy)."""
    return test.get("metrics") or {"test_accuracy": test["accuracy"]}


def plot_stages(stages_s: dict[str, float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.barh(list(stages_s), list(stages_s.values()), color="#4a7bb7")
    ax.invert_yaxis()
    ax.set(xlabel="seconds", title="time per stage")
    return _png(fig)


def text_encoder(params: dict[str, str], column: str) -> str:
    """How a trial encoded a text column, from its params: bag, transformer, or the pretrained folder's name and
    whether it was frozen or fine-tuned (and how)."""

    def param(key: str) -> str:
        own = params.get(f"model.columns.{column}.{key}", "None")
        return own if own != "None" else params.get(f"model.{key}", "")

    kind = param("text_encoder") or "bag"
    if kind != "pretrained":
        return kind
    name = param("pretrained").removeprefix("package:").rstrip("/").rsplit("/", 1)[-1]
    return f"pretrained {name} ({params.get('train.finetune', 'frozen')})"


def render_html(data: ReportData) -> str:
    esc = html.escape
    varied = data.varied_params()
    best = next((t for t in data.trials if t.trial_id == data.best_trial_id), None)
    texts = data.text_columns

    def encoders(t: TrialData) -> str:
        named = len(texts) > 1
        return "; ".join(f"{c}: {text_encoder(t.params, c)}" if named else text_encoder(t.params, c) for c in texts)

    rows = "".join(
        f"<tr{' class=best' if t.trial_id == data.best_trial_id else ''}><td>{esc(t.trial_id)}</td>"
        + (f"<td>{esc(encoders(t))}</td>" if texts else "")
        + "".join(f"<td>{esc(t.params.get(k, ''))}</td>" for k in varied)
        + f"<td>{t.epochs_run}</td>{_best_cells(t, data.mode)}"
        f"<td>{'yes' if t.epochs_run < data.max_epochs else 'no'}</td></tr>"
        for t in data.trials
    )
    summary = [
        ("search", f"{data.run_name} ({data.status.lower()})"),
        (
            "best trial",
            f"{data.best_trial_id} " + ", ".join(f"{k}={best.params.get(k)}" for k in varied) if best else "-",
        ),
        (
            "test",
            ", ".join(f"{k.removeprefix('test_')} {v:.4f}" for k, v in test_metrics(data.test).items())
            if data.test
            else "-",
        ),
        (
            "baseline",
            f"{data.baseline_name} on the same splits: "
            + ", ".join(f"{k.removeprefix('test_')} {v:.4f}" for k, v in data.baseline.items())
            if data.baseline
            else data.baseline_name
            if data.baseline_name == baseline.NO_IMAGE_BASELINE
            else "-",
        ),
        *([("the baseline wins", loss)] if (loss := baseline_verdict(data)) else []),
        ("registered version", data.model_version or "-"),
        ("promotion", data.promotion or "-"),
        (
            "compute",
            f"{data.trial_epochs} trial-epochs, against {data.full_trial_epochs} to run every trial to the "
            f"end ({data.trial_epochs / max(data.full_trial_epochs, 1):.0%})",
        ),
        ("ASHA rungs", ", ".join(map(str, data.rungs)) or "-"),
        *(
            [
                (
                    "pbt copies",
                    "; ".join(f"{c['trial']} copied {c['copied']} at epoch {c['epoch']}" for c in data.lineage),
                )
            ]
            if data.lineage
            else []
        ),
    ]
    if data.predicted_epoch_s and data.measured_epoch_s:
        summary.append(
            (
                "epoch time",
                f"predicted {data.predicted_epoch_s:.3f} s by kiln plan, measured median {data.measured_epoch_s:.3f} s",
            )
        )
    figures = [("trials", plot_trials(data))]
    if len(data.trials) > 2:
        figures.append(("search", plot_search(data)))
    if data.lineage:
        figures.append(("lineage", plot_lineage(data)))
    if data.test and data.test.get("confusion"):
        figures.append(("confusion", plot_confusion(data.test)))
    if data.test and data.test.get("roc"):
        figures.append(("roc", plot_roc(data.test)))
    if data.test and data.test.get("points"):
        figures.append(("regression", plot_regression(data.test)))
    if data.stages_s:
        figures.append(("stages", plot_stages(data.stages_s)))
    images = "".join(f'<figure><img alt="{name}" src="data:image/png;base64,{b64}"></figure>' for name, b64 in figures)
    head = "".join(
        f"<th>{esc(k)}</th>"
        for k in ["trial", *(["text encoder"] if texts else []), *varied, "epochs", "best epoch", data.metric]
        + ["stopped early"]
    )
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in summary)
    shown = sorted({k for values in data.candidates.values() for k in values}, key=lambda k: (k[:4] != "val_", k))
    candidates = (
        "<h2>Candidates</h2><p>chosen on val; test only reports</p><table><tr><th>candidate</th>"
        + "".join(f"<th>{esc(k)}</th>" for k in shown)
        + "</tr>"
        + "".join(
            f"<tr{' class=best' if name == data.candidate else ''}><td>{esc(name)}</td>"
            + "".join(f"<td>{values[k]:.4f}</td>" if k in values else "<td></td>" for k in shown)
            + "</tr>"
            for name, values in data.candidates.items()
        )
        + "</table>"
        if len(data.candidates) > 1
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Kiln report: {esc(data.run_name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}tr.best{{background:#eef6ee}}
figure{{display:inline-block;margin:0.5em}}img{{max-width:100%}}</style></head><body>
<h1>Kiln report: {esc(data.run_name)}</h1><table>{facts}</table>{candidates}{images}
<h2>Trials</h2><table><tr>{head}</tr>{rows}</table>
<p>MLflow parent run <code>{esc(data.run_id)}</code>; rebuild with <code>kiln report {esc(data.run_id)}</code>.</p>
</body></html>"""


def _best_cells(trial: TrialData, mode: str) -> str:
    """The best epoch and its value, tie-broken as Ray Train keeps checkpoints (ranking.best_epoch)."""
    best = best_epoch(trial.history, mode)
    return "<td>-</td><td>-</td>" if best is None else f"<td>{best[0]}</td><td>{best[1]:.4f}</td>"
