import dataclasses
import math
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.plan import calibrate, cost, flops, hardware, show
from pipelines.plan.cost import WorkerPrediction
from pipelines.plan.hardware import HardwareProfile

ROOT = Path(__file__).resolve().parents[3]


def cfg(*overrides):
    return load_config(None, list(overrides))


def tiny():
    return cfg("model.hidden=[16]", "model.dropout=0")


def flat_profile(**changes):
    """Round numbers so predictions can be worked out by hand."""
    base = HardwareProfile(
        "flat",
        flops_per_s=1e9,
        mem_bandwidth_bytes_per_s=1e9,
        interconnect_bandwidth_bytes_per_s=1e9,
        allreduce_latency_s=1e-3,
        per_step_overhead_s=1e-3,
        per_epoch_overhead_s=0.5,
        trial_fixed_cost_s=10.0,
    )
    return dataclasses.replace(base, **changes)


FLOPS = {"flops_per_sample": 1e6, "forward_flops_per_sample": 0.0, "grad_bytes": 1e6, "input_bytes_per_sample": 100}


def test_flops_of_an_mlp_match_the_matmul_shapes():
    # Linear(8, 16) -> ReLU -> Linear(16, 4). FlopCounterMode counts 2*in*out per row for each
    # addmm. Backward has a grad-weight matmul per layer and a grad-input matmul per layer except
    # the first (its input needs no gradient): 2*8*16 + 2*(2*16*4) = 512, not 2 x forward.
    counted = flops.count_flops(tiny(), input_dim=8, num_classes=4)
    assert counted["forward_flops_per_sample"] == 2 * 8 * 16 + 2 * 16 * 4 == 384
    assert counted["backward_flops_per_sample"] == 2 * 8 * 16 + 2 * 2 * 16 * 4 == 512
    assert counted["flops_per_sample"] == 896
    assert counted["num_params"] == (8 * 16 + 16) + (16 * 4 + 4) == 212
    assert counted["param_bytes"] == counted["grad_bytes"] == 4 * 212
    assert counted["input_bytes_per_sample"] == 8 * 4 + 8


def test_quickstart_flops():
    counted = flops.count_flops(load_config(ROOT / "configs" / "quickstart.yaml"), 64, 10)
    forward = 2 * (64 * 128 + 128 * 64 + 64 * 10)
    assert counted["forward_flops_per_sample"] == forward == 34048
    assert counted["backward_flops_per_sample"] == 2 * forward - 2 * 64 * 128 == 51712


def test_ring_allreduce_arithmetic():
    assert cost.ring_allreduce_s(1e6, 1, 1e9, 5e-4) == 0
    assert cost.ring_allreduce_s(1e6, 2, 1e9, 5e-4) == pytest.approx(1e-3 + 5e-4)
    assert cost.ring_allreduce_s(1e6, 4, 1e9, 5e-4) == pytest.approx(1.5e-3 + 5e-4)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((8, 1, 2, 10), 8 * 1 + 4 * 1 + 2 * 2 + 1 * 4 + 0.5 * 2),  # rungs 1, 2, 4, 8: 21
        ((9, 1, 3, 9), 9 * 1 + 3 * 2 + 1 * 6),  # rungs 1, 3 (none at max): 21
        ((16, 2, 2, 10), 16 * 2 + 8 * 2 + 4 * 4 + 2 * 2),  # rungs 2, 4, 8: 68
        ((4, 10, 2, 10), 4 * 10),  # grace reaches max: no rungs, every trial runs to the end
    ],
)
def test_asha_trial_epochs(args, expected):
    assert cost.asha_trial_epochs(*args) == pytest.approx(expected)


def test_predict_by_hand():
    one = cost.predict(cfg(), flat_profile(), FLOPS, num_workers=1, train_rows=1000)
    # batch 64: compute 64e6/1e9, data 6400/1e9, overhead 1e-3; ceil(1000/64) = 16 steps
    assert (one.batch_size_per_worker, one.steps_per_epoch, one.allreduce_s) == (64, 16, 0)
    assert one.step_time_s == pytest.approx(0.064 + 6.4e-6 + 1e-3)
    assert one.epoch_time_s == pytest.approx(16 * 0.0650064 + 0.5)
    assert one.samples_per_s == pytest.approx(1000 / 1.5401024) and one.efficiency == 1
    two = cost.predict(cfg(), flat_profile(), FLOPS, num_workers=2, train_rows=1000)
    # batch 32 each, all-reduce 2*(1/2)*1e6/1e9 + 1e-3; ceil(1000/2/32) = 16 steps
    assert (two.batch_size_per_worker, two.steps_per_epoch) == (32, 16)
    assert two.allreduce_s == pytest.approx(2e-3)
    assert two.step_time_s == pytest.approx(0.032 + 2e-3 + 3.2e-6 + 1e-3)
    assert two.epoch_time_s == pytest.approx(16 * 0.0350032 + 0.5)
    assert two.efficiency == pytest.approx(1.5401024 / (2 * 1.0600512))


def test_workers_beyond_the_cores_share_them():
    two = cost.predict(cfg(), flat_profile(cores=1), FLOPS, num_workers=2, train_rows=1000)
    assert two.compute_s == pytest.approx(2 * 0.032) and two.overhead_s == pytest.approx(2e-3)
    assert two.epoch_time_s == pytest.approx(16 * (0.064 + 2e-3 + 3.2e-6 + 2e-3) + 2 * 0.5)


def test_the_epoch_fixed_cost_stretches_only_when_workers_outnumber_the_cores():
    two = cost.predict(cfg(), flat_profile(cores=4), FLOPS, num_workers=2, train_rows=1000)
    assert two.epoch_time_s == pytest.approx(16 * 0.0350032 + 0.5)


def test_the_workers_split_the_validation_pass():
    with_val = {**FLOPS, "forward_flops_per_sample": 1e6}
    # val rows = 700 * 0.15 / 0.7 = 150, forward 1e6 FLOPs each at 1e9 FLOP/s: 0.15 s on one worker
    one = cost.predict(cfg(), flat_profile(), with_val, num_workers=1, train_rows=700)
    two = cost.predict(cfg(), flat_profile(), with_val, num_workers=2, train_rows=700)
    steps_one, steps_two = 11 * 0.0650064, 11 * 0.0350032  # ceil(700/64), ceil(700/2/32)
    assert one.epoch_time_s == pytest.approx(steps_one + 0.15 + 0.5)
    assert two.epoch_time_s == pytest.approx(steps_two + 0.075 + 0.5)


def prediction(num_workers, efficiency):
    return WorkerPrediction(num_workers, 1, 0, 0, 0, 0, 1, 1, 1, 1, efficiency)


def test_recommend_workers_takes_the_most_that_stay_efficient():
    assert cost.recommend_workers([prediction(1, 1.0), prediction(2, 0.9), prediction(4, 0.79)]) == 2
    assert cost.recommend_workers([prediction(1, 1.0), prediction(2, 0.8)]) == 2
    assert cost.recommend_workers([prediction(2, 0.5), prediction(4, 0.3)]) == 1


def test_search_wall_time():
    one = dataclasses.replace(prediction(1, 1.0), epoch_time_s=2.0)
    train_run = cfg("train.runner=ray_train")
    search = cost.predict_search(train_run, flat_profile(), one, max_concurrent=2)  # 8, 1, 2, 10
    assert search["trial_epochs"] == pytest.approx(21)
    assert search["compute_s"] == pytest.approx(42)
    assert search["wall_time_s"] == pytest.approx((42 + 8 * 10.0) / 2)
    reporting = cost.predict_search(train_run, flat_profile(per_report_s=0.1), one, max_concurrent=2)
    assert reporting["wall_time_s"] == pytest.approx((42 + 21 * 0.1 + 8 * 10.0) / 2)
    # train.runner: auto trains a 1-worker trial in its trial actor, at that path's own costs
    in_actor = cost.predict_search(
        cfg(), flat_profile(in_actor_trial_fixed_cost_s=1.0, in_actor_per_report_s=0.05), one, max_concurrent=2
    )
    assert in_actor["wall_time_s"] == pytest.approx((42 + 21 * 0.05 + 8 * 1.0) / 2)
    fifo = cost.predict_search(cfg("tune.scheduler.name=fifo"), flat_profile(), one, 2)
    assert fifo["trial_epochs"] == 8 * 10
    # two 2-worker trials cannot run side by side on 2 cores
    two = dataclasses.replace(prediction(2, 1.0), epoch_time_s=2.0)
    shared = cost.predict_search(cfg(), flat_profile(cores=2), two, max_concurrent=2)
    assert shared["wall_time_s"] == pytest.approx(42 + 8 * 10.0)


def test_builtin_and_local_profiles():
    assert hardware.load_profile("H100") is hardware.load_profile("h100") is hardware.H100
    assert hardware.H100.flops_per_s == pytest.approx(0.4 * 989e12)
    assert {hardware.load_profile(n).name for n in ("A100", "L4")} == {"A100", "L4"}
    assert hardware.load_profile("local").cores == hardware.local_cores()


PROFILE_YAML = """\
flops_per_s: 1e12
mem_bandwidth_bytes_per_s: 5.0e+11
interconnect_bandwidth_bytes_per_s: 2.5e+10
allreduce_latency_s: 0.0001
per_step_overhead_s: 0.001
per_epoch_overhead_s: 0.3
trial_fixed_cost_s: 20
cores: 8
"""


def test_yaml_profile(tmp_path):
    path = tmp_path / "my-box.yaml"
    path.write_text(PROFILE_YAML)
    profile = hardware.load_profile(path)
    assert profile.name == "my-box" and profile.cores == 8
    assert profile.flops_per_s == 1e12  # YAML reads 1e12 as a string; it is still accepted


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("flops_per_s: 1e12", "flops_per_s: -1"), "flops_per_s: Input should be greater than 0"),
        (("flops_per_s: 1e12", "flops_per_s: fast"), "flops_per_s: Input should be a valid number"),
        (("cores: 8", "cores: 8\nbogus: 1"), "bogus: unknown field"),
        (("trial_fixed_cost_s: 20\n", ""), "trial_fixed_cost_s: Field required"),
    ],
)
def test_bad_yaml_profile_names_the_field(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(PROFILE_YAML.replace(*change))
    with pytest.raises(ValueError, match=f"bad.yaml: {message}"):
        hardware.load_profile(path)


def test_unknown_profile_name():
    with pytest.raises(ValueError, match="unknown profile; use H100, A100, L4, local"):
        hardware.load_profile("TPU")


def test_plan_shape_table_and_png(tmp_path):
    result = cost.plan(
        tiny(), profile=hardware.H100, workers=[1, 2, 4], input_dim=8, num_classes=4, train_rows=1000, max_concurrent=2
    )
    assert set(result) == {"workers", "recommended_workers", "search", "model", "hardware"}
    assert [row["num_workers"] for row in result["workers"]] == [1, 2, 4]
    assert set(result["workers"][0]) == {
        "num_workers",
        "batch_size_per_worker",
        "steps_per_epoch",
        "step_time_s",
        "epoch_time_s",
        "samples_per_s",
        "efficiency",
        "flops_per_sample",
        "param_bytes",
        "compute_s",
        "allreduce_s",
        "data_s",
        "overhead_s",
    }
    assert result["workers"][0]["flops_per_sample"] == 896
    assert result["workers"][0]["param_bytes"] == 848
    assert set(result["search"]) == {"num_workers", "trial_epochs", "compute_s", "trial_start_s", "wall_time_s"}
    assert result["search"]["num_workers"] == 2  # the config's own worker count
    assert result["hardware"] == "H100" and result["recommended_workers"] in (1, 2, 4)
    table = show.plan_table(result)
    assert len(table.splitlines()) == 2 + 3 + 1 and "recommended workers" in table
    show.save_png(result, tmp_path / "plan.png")
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_start_up_costs_follow_the_speed_of_the_cores():
    """A probe twice the reference's time doubles the CPU-bound costs; Train's report poll stays; a wild probe
    is clamped rather than believed."""
    slow, factor = hardware.at_speed(hardware.LOCAL, 2 * hardware.REFERENCE_PROBE_S)
    assert factor == pytest.approx(2.0)
    assert slow.trial_fixed_cost_s == pytest.approx(2 * hardware.LOCAL.trial_fixed_cost_s)
    assert slow.in_actor_trial_fixed_cost_s == pytest.approx(2 * hardware.LOCAL.in_actor_trial_fixed_cost_s)
    assert slow.in_actor_per_report_s == pytest.approx(2 * hardware.LOCAL.in_actor_per_report_s)
    assert slow.per_report_s == hardware.LOCAL.per_report_s and slow.flops_per_s == hardware.LOCAL.flops_per_s
    assert hardware.at_speed(hardware.LOCAL, 100 * hardware.REFERENCE_PROBE_S)[1] == hardware.SPEED_FACTOR_RANGE[1]
    assert hardware.at_speed(hardware.LOCAL, 0.0)[1] == hardware.SPEED_FACTOR_RANGE[0]
    # the search's predicted wall time moves with them: at 1 trial at a time, the start-ups are most of it
    one = dataclasses.replace(prediction(1, 1.0), epoch_time_s=0.01)
    fast_s = cost.predict_search(cfg(), hardware.LOCAL, one, max_concurrent=1)["wall_time_s"]
    slow_s = cost.predict_search(cfg(), slow, one, max_concurrent=1)["wall_time_s"]
    assert 1.8 * fast_s < slow_s < 2 * fast_s


def test_calibration_falls_back_when_all_reduce_fails(monkeypatch):
    def broken(grad_bytes):
        raise RuntimeError("no loopback")

    monkeypatch.setattr(calibrate, "_loopback_allreduce", broken)
    with pytest.warns(UserWarning, match="no loopback"):
        profile = calibrate.calibrate_local(tiny(), 8, 4, seconds=0.2)
    assert profile.allreduce_latency_s == hardware.LOOPBACK_LATENCY_S
    assert profile.flops_per_s > 0 and profile.mem_bandwidth_bytes_per_s > 0
    assert profile.cores == hardware.local_cores() and "default used" in profile.notes
    # the start-up costs are the recorded ones at this machine's speed now, said in the notes
    factor = profile.in_actor_trial_fixed_cost_s / hardware.LOCAL.in_actor_trial_fixed_cost_s
    low, high = hardware.SPEED_FACTOR_RANGE
    assert low <= factor <= high and f"x{factor:.2f}" in profile.notes
    assert profile.trial_fixed_cost_s == pytest.approx(factor * hardware.LOCAL.trial_fixed_cost_s)


def test_calibration_measures_loopback_all_reduce():
    """About 5 s: two spawned gloo processes (calibrate_local gives up after 8 s; this waits)."""
    latency, bandwidth = calibrate._loopback_allreduce(4 * 17226, timeout_s=60)
    assert 0 < latency < 0.1 and bandwidth > 1e7
    assert math.isfinite(bandwidth)


def test_plan_counts_each_category_tables_parameters():
    from pipelines.data.preprocessing import Encoder

    encoders = [
        Encoder("town", "category", levels=["a", "b", "c"]),
        Encoder("rooms", "number"),
        Encoder("garage", "binary", levels=["no", "yes"]),
    ]
    inputs = flops.input_tables(encoders, cfg("model.hidden=[16]"))
    assert inputs == [
        {"column": "town", "type": "category", "encoded": 5, "table_params": 80},
        {"column": "rooms", "type": "number", "encoded": 1, "table_params": 0},
        {"column": "garage", "type": "binary", "encoded": 2, "table_params": 32},
    ]
    plan = cost.plan(
        cfg("model.hidden=[16]"),
        profile=hardware.load_profile("A100"),
        workers=[1],
        input_dim=8,
        num_classes=2,
        train_rows=100,
        max_concurrent=1,
    )
    plan["inputs"] = inputs
    assert "one-hot tables (first-layer rows): town 5 levels = 80, garage 2 levels = 32 parameters" in show.plan_table(
        plan
    )
