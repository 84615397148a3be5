"""fuzz: both HTTP APIs of a live endpoint under Schemathesis, generated from the OpenAPI document it serves.

    .venv/bin/python benchmarks/fuzz.py [--examples-kiln 2100] [--examples-v2 180]

Registers the tiny model in a throwaway store, serves it on a runtime of its own (HAProxy ingress, as `kiln
serve` does), and runs Schemathesis once per API (`kiln`: /predict, /model, health; `v2`: the Open Inference
Protocol) with `--max-examples` per operation, set so each API gets over 2,000 requests, and only the
`not_a_server_error` check. Meanwhile the replica's peak resident memory is read from the kernel (VmHWM, reset
once the replica is idle). Records `fuzz_requests` (the smaller of the two APIs' counts), `fuzz_5xx` and
`fuzz_peak_memory_ratio` (peak over idle RSS) in results.json. About 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving_support import fuzz, tiny_store  # noqa: E402

from common import record  # noqa: E402
from tests_support import descendants_named, free_port  # noqa: E402

NAME = "fuzz-mlp"


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Per API: /predict's body schema is small, so its operation needs many more examples for the same count.
    parser.add_argument("--examples-kiln", type=int, default=2100, help="--max-examples per kiln operation")
    parser.add_argument("--examples-v2", type=int, default=180, help="--max-examples per v2 operation")
    args = parser.parse_args()

    from pipelines import deploy
    from pipelines.cluster import runtime

    with tempfile.TemporaryDirectory(prefix="kiln-fuzz-") as folder:
        cfg, _ = tiny_store(Path(folder), NAME, [f"serve.port={free_port()}"])
        runtime.start(cfg, env=deploy.ingress_env(cfg))
        from serving.app import deploy as serve_model  # after the start: Serve reads its ingress settings then

        try:
            url = serve_model(cfg, name=NAME, alias="champion")
            (replica,) = descendants_named(os.getpid(), "ServeReplica")
            Path(f"/proc/{replica}/clear_refs").write_text("5")  # VmHWM from now on
            idle = rss_kib(replica, "VmRSS")
            examples = {"kiln": args.examples_kiln, "v2": args.examples_v2}
            results = {api: fuzz(url, api=api, examples=n, workdir=Path(folder)) for api, n in examples.items()}
            peak = rss_kib(replica, "VmHWM")
        finally:
            runtime.stop()
    for api, result in results.items():
        print(f"fuzz {api}: {result['requests']} requests, {result['five_xx']} of 500 or more", flush=True)
        if result["failures"]:
            print(result["failures"], flush=True)
    detail = {api: {k: v for k, v in r.items() if k != "failures"} for api, r in results.items()}
    detail["replica_rss_mib"] = {"idle": round(idle / 1024, 1), "peak": round(peak / 1024, 1)}
    record(
        [
            {
                "name": "fuzz_requests",
                "value": min(r["requests"] for r in results.values()),
                "unit": "requests per API (fewer of the two)",
                "target": 2000,
                "baseline": f"Schemathesis from the endpoint's /openapi.json, --max-examples {examples}",
                "detail": detail,
            },
            {"name": "fuzz_5xx", "value": sum(r["five_xx"] for r in results.values()), "unit": "answers", "target": 0},
            {
                "name": "fuzz_peak_memory_ratio",
                "value": round(peak / idle, 3),
                "unit": "x idle RSS",
                "target": 2.0,
                "baseline": "the replica's VmHWM during the fuzz over its VmRSS before it",
            },
        ]
    )


if __name__ == "__main__":
    main()
