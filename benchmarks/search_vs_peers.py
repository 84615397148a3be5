"""search_vs_peers: time and trial-epochs until a search reaches the best val accuracy of a 16-trial random search
minus 0.5 points, side by side in one run, same search space, seeds and cores, for
- Kiln (its tuner, ASHA as configured, 1-worker trials in their reused Tune actors), and Kiln with
  `tune.scheduler.name: asha_promote` (`kiln_promote`: paused trials, promoted from rungs),
- Optuna with SuccessiveHalvingPruner in one process (n_jobs = cores, threads, RandomSampler(seed)),
- the documented Ray Tune + Ray Train wiring: a Tune function trainable that runs a TorchTrainer (1 worker) with
  Ray's TuneReportCallback, Ray's ASHAScheduler, the datasets handed to the trainer and read with
  iter_torch_batches,
on two workloads: the quickstart's (digits) and a compute-bound one (a wide MLP on 100k generated rows).

The goal comes from a random search of 16 trials run to the end in one process (the bare loop Optuna's trials
also use), over the same space (Optuna reseeds its sampler per thread when n_jobs > 1, so which configs each
search draws differs: random search's own variance, as each system would meet it). Every system trains on the
very arrays Kiln's ingest produced. Clocks start when each search starts: Ray's runtime start and Kiln's ingest
are paid once and reported beside.

    .venv/bin/python benchmarks/search_vs_peers.py [--seeds 1] [--samples 16] [--workloads small,large]
        [--systems kiln,kiln_promote,optuna,ray_docs]   (also kiln_random, kiln_tpe, kiln_tpe_promote, kiln_pbt)

`kiln` is the quickstart's own sampler and scheduler; the kiln_* variants name theirs. The headline ratios are
those of Kiln's default (`kiln`, or the variant that matches it); every variant gets its ratio to Optuna, and the
default its best val accuracy at equal compute against random search, per seed. Issue 37's comparison:

    .venv/bin/python benchmarks/search_vs_peers.py --workloads large --seeds 5 \
        --systems kiln_random,kiln_tpe,kiln_tpe_promote,kiln_pbt,optuna,ray_docs

On 2 cores a seed of the large workload with every system takes about 14 minutes (issue 37's 5 seeds: 69), of
which Ray's documented wiring is about 5 (every trial is a fresh Train run).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from pipelines.cluster import runtime
from pipelines.config import load_config
from pipelines.data import ingest
from pipelines.search import tuner
from pipelines.search.space import parse_search_space, to_tune_domain

from common import bare_training, matrix, median, pin_threads, record, write_teacher_table

WORKLOADS = {
    "small": {
        "epochs": 8,
        "overrides": [],
        "space": {
            "train.lr": {"loguniform": [1e-5, 3e-1]},
            "model.hidden": {"choice": [[32], [128, 64], [256, 128]]},
            "train.batch_size": {"choice": [32, 64, 256]},
        },
    },
    "large": {
        "epochs": 6,
        "rows": 100_000,
        # standard numbers: data.numbers auto picks ple at this size (32 columns become 544), which triples every
        # system's epochs alike and compares searches no better
        "overrides": ["data.label=label", "data.numbers=standard"],
        "space": {
            "train.lr": {"loguniform": [1e-4, 3e-2]},
            "model.hidden": {"choice": [[256, 256], [512, 256], [512, 512]]},
            "train.batch_size": {"choice": [256, 512, 1024]},
        },
    },
}


SYSTEMS = ("kiln", "kiln_promote", "optuna", "ray_docs")
VARIANTS = {  # Kiln with a named sampler and scheduler, over the same space and seeds (--systems picks them)
    "kiln_random": {"tune.search": "random", "tune.scheduler.name": "asha"},
    "kiln_promote": {"tune.search": "random", "tune.scheduler.name": "asha_promote"},
    "kiln_tpe": {"tune.search": "tpe", "tune.scheduler.name": "asha"},
    "kiln_tpe_promote": {"tune.search": "tpe", "tune.scheduler.name": "asha_promote"},
    "kiln_pbt": {"tune.search": "random", "tune.scheduler.name": "pbt"},
}
TARGETS = {"search_time_ratio_vs_optuna_large": 0.8, "search_time_ratio_vs_ray_docs_large": 0.3}


def default_system(cfg, systems) -> str:
    """The system that runs the quickstart's own sampler and scheduler: `kiln`, or the variant that matches it."""
    if "kiln" in systems:
        return "kiln"
    own = {"tune.search": cfg.tune.search, "tune.scheduler.name": cfg.tune.scheduler.name}
    return next((name for name, settings in VARIANTS.items() if settings == own and name in systems), "kiln")


class Clock:
    """(seconds since the search started, val accuracy) of every reported epoch, from any thread."""

    def __init__(self):
        self.started, self.points, self.lock = time.perf_counter(), [], threading.Lock()
        self.ended: float | None = None

    def stop(self) -> Clock:
        self.ended = time.perf_counter()
        return self

    def __getstate__(self):  # Tune saves its callbacks with the experiment; the lock stays here
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state):
        self.__dict__.update(state, lock=threading.Lock())

    def tick(self, accuracy: float) -> None:
        with self.lock:
            self.points.append((time.perf_counter() - self.started, float(accuracy)))

    def summary(self, goal: float | None = None, budget: int | None = None) -> dict:
        """Time and epochs to the goal, and the best val accuracy within the first `budget` reported epochs (equal
        compute across systems)."""
        reached = None if goal is None else next((i for i, (_, v) in enumerate(self.points) if v >= goal), None)
        return {
            "wall_s": round(self.ended - self.started, 1),
            "trial_epochs": len(self.points),
            "best": round(max(v for _, v in self.points), 4),
            "s_to_goal": None if reached is None else round(self.points[reached][0], 1),
            "epochs_to_goal": None if reached is None else reached + 1,
            **({} if budget is None else {"best_at_equal_epochs": round(max(v for _, v in self.points[:budget]), 4)}),
        }


def tune_log(clock: Clock):
    from ray.tune import Callback

    class Log(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "val_accuracy" in result:
                clock.tick(result["val_accuracy"])

    return Log()


def suggest(trial, space: dict) -> dict:
    """Optuna's sample of Kiln's search space (choices by index: Optuna's categoricals hold scalars only)."""
    sample = {}
    for key, (kind, args) in ((k, next(iter(v.items()))) for k, v in space.items()):
        if kind == "choice":
            sample[key] = args[trial.suggest_categorical(key, list(range(len(args))))]
        else:
            sample[key] = trial.suggest_float(key, *args, log=kind == "loguniform")
    return sample


def in_process(cfg, space: dict, data, *, seed: int, samples: int, prune: bool) -> dict:
    """Optuna in this process: SuccessiveHalvingPruner at Kiln's grace period and reduction factor (prune), or no
    pruner at all (the random search that sets the goal)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    clock = Clock()

    def objective(trial):
        accuracy = 0.0
        for epoch, (_, accuracy) in enumerate(
            bare_training(cfg.with_sample(suggest(trial, space)), *data, cfg.train.epochs), start=1
        ):
            clock.tick(accuracy)
            trial.report(accuracy, epoch)
            if prune and trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    pruner = (
        optuna.pruners.SuccessiveHalvingPruner(
            min_resource=cfg.tune.scheduler.grace_period, reduction_factor=int(cfg.tune.scheduler.reduction_factor)
        )
        if prune
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed), pruner=pruner)
    study.optimize(objective, n_trials=samples, n_jobs=os.cpu_count())
    return clock.stop()


def kiln(cfg, splits, name: str) -> Clock:
    clock = Clock()
    tuner.search(cfg, splits, search_name=name, callbacks=[tune_log(clock)])
    return clock.stop()


def ray_docs(cfg, data, *, seed: int, root: str, name: str) -> Clock:
    """Ray's documented wiring for tuning a Ray Train run (Train V2): the trial function builds a TorchTrainer
    over Ray Datasets of Kiln's arrays."""
    import pyarrow as pa
    import ray.data
    import ray.train
    import torch
    import torch.nn.functional as F
    from ray import tune
    from ray.data.extensions import ArrowTensorArray
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from pipelines.model.networks import build_model

    train_x, train_y, val_x, val_y = data
    datasets = {
        part: ray.data.from_arrow(pa.table({"x": ArrowTensorArray.from_numpy(x), "y": y}))
        for part, x, y in (("train", train_x, train_y), ("val", val_x, val_y))
    }
    input_dim, classes, epochs = train_x.shape[1], int(train_y.max()) + 1, cfg.train.epochs

    def train_loop(config):
        trial_cfg = cfg.with_sample(config)
        torch.manual_seed(trial_cfg.train.seed)
        model = ray.train.torch.prepare_model(build_model(trial_cfg.model, input_dim=input_dim, num_classes=classes))
        optimizer = torch.optim.AdamW(model.parameters(), lr=trial_cfg.train.lr)
        size = trial_cfg.train.batch_size
        for epoch in range(1, epochs + 1):
            model.train()
            for batch in ray.train.get_dataset_shard("train").iter_torch_batches(batch_size=size):
                loss = F.cross_entropy(model(batch["x"]), batch["y"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            model.eval()
            correct = total = 0
            with torch.inference_mode():
                for batch in ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=size):
                    correct += int((model(batch["x"]).argmax(1) == batch["y"]).sum())
                    total += len(batch["y"])
            ray.train.report({"val_accuracy": correct / total, "epoch": epoch})

    def trial(config):
        trainer = TorchTrainer(
            train_loop,
            train_loop_config=config,
            scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
            run_config=ray.train.RunConfig(
                name=f"train-{tune.get_context().get_trial_id()}", storage_path=root, callbacks=[TuneReportCallback()]
            ),
            datasets=datasets,
        )
        trainer.fit()

    clock = Clock()
    space = {key: to_tune_domain(domain) for key, domain in parse_search_space(cfg.tune.search_space).items()}
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=epochs,
        grace_period=cfg.tune.scheduler.grace_period,
        reduction_factor=cfg.tune.scheduler.reduction_factor,
    )
    tune.Tuner(
        tune.with_resources(trial, {"cpu": 0.01}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_accuracy",
            mode="max",
            scheduler=scheduler,
            num_samples=cfg.tune.num_samples,
            max_concurrent_trials=os.cpu_count(),
            search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=os.cpu_count()),
        ),
        run_config=tune.RunConfig(name=name, storage_path=root, callbacks=[tune_log(clock)]),
    ).fit()
    return clock.stop()


def workload_config(kind: str, root: str, samples: int, seed: int, *, write: bool = True):
    spec = WORKLOADS[kind]
    source = "builtin:digits"
    if kind == "large" and write:
        source = str(write_teacher_table(Path(root) / "teacher.parquet", rows=spec["rows"], seed=0))
    overrides = [
        f"storage.root={root}",
        f"data.source={source}",
        f"tune.num_samples={samples}",
        f"train.epochs={spec['epochs']}",
        "train.num_workers=1",
        "train.cpus_per_worker=1",
        f"tune.search_space={json.dumps(spec['space'])}",
        f"tune.seed={seed}",
        f"train.seed={seed}",
        f"registry.model_name=peers-{kind}",
        *spec["overrides"],
    ]
    return load_config("configs/quickstart.yaml", overrides).for_task("classification")


def one_workload(kind: str, seeds: int, samples: int, systems=SYSTEMS) -> dict:
    import ray

    rows = []
    with tempfile.TemporaryDirectory() as root:
        cfg = workload_config(kind, root, samples, 0)
        started = time.perf_counter()
        runtime.start(cfg)
        runtime_s = time.perf_counter() - started
        started = time.perf_counter()
        splits = ingest.ingest(cfg)
        ingest_s = time.perf_counter() - started
        data = [a.copy() for part in ("train", "val") for a in matrix(*ray.get(splits.arrays[part]))]
        for seed in range(seeds):
            cfg = workload_config(kind, root, samples, seed)
            reference = in_process(cfg, WORKLOADS[kind]["space"], data, seed=seed, samples=samples, prune=False)
            goal = max(v for _, v in reference.points) - 0.005
            say(kind, seed, "random_search", reference.summary(goal))
            searches = {}
            for system in systems:  # each printed as it ends: an interrupted run keeps the rest
                if system == "kiln":  # the quickstart's own sampler and scheduler
                    searches[system] = kiln(cfg, splits, f"kiln-{kind}-{seed}")
                elif system in VARIANTS:
                    variant = cfg.with_sample(VARIANTS[system])
                    searches[system] = kiln(variant, splits, f"{system.replace('_', '-')}-{kind}-{seed}")
                elif system == "optuna":
                    searches[system] = in_process(
                        cfg, WORKLOADS[kind]["space"], data, seed=seed, samples=samples, prune=True
                    )
                else:
                    searches[system] = ray_docs(cfg, data, seed=seed, root=root, name=f"docs-{kind}-{seed}")
                say(kind, seed, system, searches[system].summary(goal))
            clocks = {"random_search": reference, **searches}
            budget = min(len(clock.points) for clock in clocks.values())
            row = {
                "seed": seed,
                "goal": round(goal, 4),
                "equal_epochs": budget,
                **{system: clock.summary(goal, budget) for system, clock in clocks.items()},
            }
            rows.append(row)
            print(json.dumps({"workload": kind, **row}), flush=True)
        runtime.stop()
    return {
        "rows": rows,
        "default": default_system(cfg, systems),
        "runtime_start_s": round(runtime_s, 1),
        "ingest_s": round(ingest_s, 1),
        "epoch_s": median([t for t, _ in bare_training(cfg, *data, 1)]),
    }


def say(kind: str, seed: int, system: str, summary: dict) -> None:
    print(json.dumps({"workload": kind, "seed": seed, "system": system, **summary}), flush=True)


def time_to_goal(summary: dict) -> float:
    """Seconds to the goal; a search that never reached it counts its whole wall time (a lower bound)."""
    return summary["s_to_goal"] if summary["s_to_goal"] is not None else summary["wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--workloads", default="small,large")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"of {', '.join(SYSTEMS[:1] + tuple(VARIANTS) + SYSTEMS[2:])}"
    )
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="re-record the figures from the rows results.json holds (after the quickstart's default changed)",
    )
    parser.add_argument(
        "--from-log", help="record the figures from the seed rows an interrupted run printed (its stdout, saved)"
    )
    args = parser.parse_args()
    systems = tuple(args.systems.split(","))
    pin_threads(1)  # the in-process peers run one trial per core, as Kiln's trials do
    for kind in args.workloads.split(","):  # each workload's figures land as it ends: a late failure keeps them
        if args.from_results or args.from_log:
            result = stored_result(kind) if args.from_results else logged_result(kind, Path(args.from_log))
            systems = tuple(k for k in result["rows"][0] if k not in ("seed", "goal", "equal_epochs", "random_search"))
            result["default"] = default_system(workload_config(kind, "unused", args.samples, 0, write=False), systems)
        else:
            result = one_workload(kind, args.seeds, args.samples, systems)
        record(figures_for(kind, result, systems, samples=args.samples, seeds=len(result["rows"])))


def stored_result(kind: str) -> dict:
    from common import RESULTS

    figures = {f["name"]: f for f in json.loads(RESULTS.read_text())["figures"]}
    detail = figures[f"search_time_ratio_vs_optuna_{kind}"]["detail"]
    return {k: v for k, v in detail.items() if k not in ("median_ratio_vs_optuna", "fastest")}


def logged_result(kind: str, log: Path) -> dict:
    rows = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"goal"' in line:
            row = json.loads(line)
            if row.pop("workload") == kind:
                rows.append(row)
    if not rows:
        raise SystemExit(f"{log}: no finished seed of the {kind} workload")
    return {"rows": rows, "from_log": True}


def figures_for(kind: str, result: dict, systems: tuple, *, samples: int, seeds: int) -> list[dict]:
    figures, rows, own = [], result["rows"], result["default"]
    baseline = (
        f"{samples}-trial search to the goal (best of a random search - 0.5 points), "
        f"{seeds} seed(s), {os.cpu_count()} cores"
    )
    optuna = "Optuna + SuccessiveHalvingPruner, one process"
    docs = "Ray Tune + Ray Train, the documented wiring, ASHAScheduler"
    ratios = {
        system: median([time_to_goal(r[system]) / time_to_goal(r["optuna"]) for r in rows])
        for system in systems
        if system not in ("optuna", "ray_docs") and "optuna" in systems
    }
    for system, peer, name, label in (
        (own, "optuna", f"search_time_ratio_vs_optuna_{kind}", f"Kiln's default ({own}) against {optuna}"),
        (own, "ray_docs", f"search_time_ratio_vs_ray_docs_{kind}", f"Kiln's default ({own}) against {docs}"),
        *(
            (variant, "optuna", f"search_time_ratio_{variant.removeprefix('kiln_')}_vs_optuna_{kind}", optuna)
            for variant in VARIANTS
            if variant != own
        ),
    ):
        if system not in systems or peer not in systems:
            continue
        ratio = median([time_to_goal(r[system]) / time_to_goal(r[peer]) for r in rows])
        figures.append(
            {
                "name": name,
                "value": round(ratio, 3),
                "unit": "x",
                "target": TARGETS.get(name),
                "baseline": f"{label}; {baseline}",
                "detail": {
                    "rows": rows,
                    "median_ratio_vs_optuna": {k: round(v, 3) for k, v in ratios.items()},
                    "fastest": min(ratios, key=ratios.get) if ratios else None,
                    **{k: v for k, v in result.items() if k not in ("rows", "default")},
                }
                if not figures
                else None,
            }
        )
    for peer in ("kiln_random", "random_search"):  # the sampler's gain at equal compute, per seed
        if own == peer or own not in systems or (peer != "random_search" and peer not in systems):
            continue
        gaps = [round(100 * (r[own]["best_at_equal_epochs"] - r[peer]["best_at_equal_epochs"]), 2) for r in rows]
        figures.append(
            {
                "name": f"search_best_val_gap_vs_{peer}_equal_compute_{kind}",
                "value": round(median(gaps), 2),
                "unit": "points",
                "target": None,
                "baseline": (
                    f"best val accuracy of Kiln's default ({own}) minus that of "
                    + ("Kiln's random sampler with ASHA" if peer == "kiln_random" else "an unpruned random search")
                    + ", each within the same number of reported trial-epochs (the fewest any system used)"
                ),
                "detail": {"gap_per_seed": gaps, "equal_epochs": [r["equal_epochs"] for r in rows]},
            }
        )

    return [{k: v for k, v in f.items() if v is not None or k == "target"} for f in figures]


if __name__ == "__main__":
    main()
