"""The plan for people: a terminal table and a PNG of step time and efficiency against the worker count."""

from __future__ import annotations

from pathlib import Path

from pipelines.plan.shapes import describe


def plan_table(plan_dict: dict) -> str:
    """The plan as a terminal table: one row per worker count, the recommendation and the search."""
    model, search = plan_dict["model"], plan_dict["search"]
    parts = ("compute_s", "allreduce_s", "data_s", "overhead_s", "step_time_s")
    lines = [
        f"{plan_dict['hardware']}: {model['num_params']:,} parameters, FLOPs per sample "
        f"{model['forward_flops_per_sample']:,.0f} forward + "
        f"{model['backward_flops_per_sample']:,.0f} backward; times per step in ms",
        f"{'workers':>7} {'batch':>5} {'steps':>5} "
        + " ".join(f"{p.removesuffix('_s').removesuffix('_time'):>9}" for p in parts)
        + f" {'epoch_s':>8} {'samples/s':>9} {'efficiency':>10}",
    ]
    for row in plan_dict["workers"]:
        times = " ".join(f"{row[p] * 1e3:>9.3f}" for p in parts)
        lines.append(
            f"{row['num_workers']:>7} {row['batch_size_per_worker']:>5} "
            f"{row['steps_per_epoch']:>5} {times} {row['epoch_time_s']:>8.3f} "
            f"{row['samples_per_s']:>9,.0f} {row['efficiency']:>10.2f}"
        )
    inputs = plan_dict.get("inputs") or []
    tables = [i for i in inputs if i["table_params"] and i["type"] != "text"]
    texts = [i for i in inputs if i["type"] == "text" and "vocabulary" in i]  # a pretrained one has no table
    if inputs:
        lines.append(
            f"inputs: {len(inputs)} columns, {sum(i['encoded'] for i in inputs)} encoded"
            + (
                "; one-hot tables (first-layer rows): "
                + ", ".join(f"{i['column']} {i['encoded']} levels = {i['table_params']:,}" for i in tables)
                + " parameters"
                if tables
                else ""
            )
            + (
                "; text embeddings: "
                + ", ".join(
                    f"{i['column']} {i['vocabulary']:,} words x {i['encoded']} per row = {i['table_params']:,}"
                    for i in texts
                )
                + " parameters"
                if texts
                else ""
            )
        )
    if search.get("shapes"):
        lines.append(
            f"the search's model shapes, epoch at {search['num_workers']} workers: "
            + ", ".join(f"{describe(s['sample'])} {s['epoch_time_s']:.3f} s" for s in search["shapes"])
            + "; the search is priced at their mean"
        )
    for e in plan_dict.get("pretrained") or []:
        lines.append(
            f"pretrained encoder of {e['column']}: {e['num_params']:,} parameters, "
            f"{e['forward_flops_per_text']:,.0f} FLOPs a text forward; "
            f"its one-time pass over {e['rows']:,} distinct texts"
            + (f" takes ~{e['pass_s']:.0f} s here, before the search" if "pass_s" in e else ", before the search")
        )
    lines.append(
        f"recommended workers: {plan_dict['recommended_workers']} (efficiency >= 0.8); "
        f"search at {search['num_workers']} workers: {search['trial_epochs']:g} "
        f"trial-epochs, {search['compute_s']:.1f} s training, "
        f"~{search['wall_time_s']:.0f} s wall ({search['trial_start_s']:.2f} s a trial to start and stop)"
    )
    return "\n".join(lines)


def save_png(plan_dict: dict, path: str | Path) -> None:
    """Step time by part and scaling efficiency against the worker count, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = plan_dict["workers"]
    labels = [str(r["num_workers"]) for r in rows]
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    steps, eff = fig.subplots(1, 2)
    bottom = [0.0] * len(rows)
    for key in ("compute_s", "allreduce_s", "data_s", "overhead_s"):
        heights = [r[key] * 1e3 for r in rows]
        steps.bar(labels, heights, bottom=bottom, label=key.removesuffix("_s"))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    steps.set(xlabel="workers", ylabel="step time (ms)", title=plan_dict["hardware"])
    eff.plot(labels, [r["efficiency"] for r in rows], marker="o")
    eff.axhline(0.8, color="grey", linestyle="--", label="0.8: recommended above")
    eff.set(xlabel="workers", ylabel="scaling efficiency", ylim=(0, 1.05), title="efficiency")
    steps.legend()
    eff.legend()
    fig.savefig(path, dpi=100)
