"""Kiln's endpoint (Ray Serve) against a bare FastAPI + uvicorn app calling the same Predictor.

Registers the tiny model in a temporary MLflow store, serves it both ways on 127.0.0.1, and loads both with
the same asyncio client at 1, 8 and 32 concurrent connections, interleaved (bare, Kiln, bare, Kiln, ...).
Prints one JSON object: medians over pairs of p50/p99 latency and throughput, and Kiln/bare ratios.

    .venv/bin/python benchmarks/serve.py                   # Kiln's default ingress (serve.ingress: auto)
    .venv/bin/python benchmarks/serve.py --ingress proxy   # Serve's Python proxy
    .venv/bin/python benchmarks/serve.py --ingress both    # HAProxy and the proxy, each in its own Ray runtime

Records serve_throughput_ratio_c32 and serve_added_p50_ms_c1 (of the default ingress) in results.json.

    .venv/bin/python benchmarks/serve.py --candidates      # registry.candidates: the blend against the network

serves a version that is the network alone and one that is its blend with trees (issue 39), each through the same
Predictor a Kiln replica runs, in its own process, loaded interleaved at 1, 8 and 32 clients. The ingress in front
is the same whichever candidate won, so this is what the blend adds. Records serve_blend_throughput_ratio_c32 and
serve_blend_added_p50_ms_c1.
"""

# No `from __future__ import annotations`: the bare app's FastAPI route must see its body type.
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "bench-tiny"
LEVELS = (1, 8, 32)
MAX_REQUESTS = {1: 400, 8: 1200, 32: 2400}
MAX_SECONDS = 5.0
WARMUP_REQUESTS = 50


def bare_server(tracking_uri: str, name: str, port: int) -> None:
    """What a user would write without Kiln: one uvicorn process, one route, the same Predictor."""
    import uvicorn
    from fastapi import FastAPI, HTTPException

    from serving.predictor import Predictor, RequestError
    from serving.protocol import PredictRequest, PredictResponse

    predictor = Predictor.from_registry(tracking_uri, name, 1)
    app = FastAPI()

    @app.post("/predict", response_model=PredictResponse)
    def predict(request: PredictRequest) -> dict:
        try:
            return predictor.predict(request.instances)
        except RequestError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def load(url: str, body: bytes, concurrency: int, max_requests: int, max_seconds: float) -> dict:
    """`concurrency` keep-alive connections, each sending one request after another."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one() -> bool:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status == 200

        await asyncio.gather(*(one() for _ in range(min(WARMUP_REQUESTS, max_requests))))
        deadline = time.perf_counter() + max_seconds
        remaining = [max_requests]

        async def worker() -> None:
            nonlocal errors
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                started = time.perf_counter()
                ok = await one()
                latencies.append(time.perf_counter() - started)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "rps": len(latencies) / elapsed,
        "requests": len(latencies),
        "errors": errors,
    }


def wait_until_up(url: str, body: bytes, timeout_s: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5).ok:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up within {timeout_s} s")


def interleaved(targets: dict[str, str], body: bytes, pairs: int) -> dict[str, dict[int, list[dict]]]:
    """Each target loaded at every level, `pairs` times, in turn (A B, A B, ...), once all answer."""
    for url in targets.values():
        wait_until_up(url, body)
    runs: dict[str, dict[int, list[dict]]] = {t: {c: [] for c in LEVELS} for t in targets}
    for _ in range(pairs):
        for c in LEVELS:
            for target, url in targets.items():
                runs[target][c].append(asyncio.run(load(url, body, c, MAX_REQUESTS[c], MAX_SECONDS)))
    return runs


def measure(ingress: str, pairs: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from serving_support import FEATURES, tiny_store

    from tests_support import free_port

    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        kiln_port, bare_port = free_port(), free_port()
        cfg, frame = tiny_store(Path(tmp), NAME, [f"serve.port={kiln_port}", f"serve.ingress={ingress}"], versions=1)
        body = json.dumps({"instances": frame[FEATURES].head(1).to_numpy().tolist()}).encode()
        bare = subprocess.Popen([sys.executable, __file__, "--bare-server", cfg.tracking_uri, str(bare_port)], cwd=ROOT)
        from pipelines import deploy
        from pipelines.cluster import runtime

        runtime.start(cfg, env=deploy.ingress_env(cfg))  # as `kiln run` and `kiln serve` start it, ingress included
        from serving.app import deploy  # after the start: Serve reads its ingress settings at import

        try:
            deploy(cfg, name=NAME, alias=cfg.registry.alias)
            targets = {"bare": f"http://127.0.0.1:{bare_port}/predict", "kiln": f"http://127.0.0.1:{kiln_port}/predict"}
            runs = interleaved(targets, body, pairs)
        finally:
            bare.terminate()
            bare.wait(30)
            runtime.stop()
    return summarize(runs, ingress, pairs)


def measure_candidates(pairs: int) -> dict:
    """The network alone against the blend, each version behind its own bare server (the replica's Predictor)."""
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from serving_support import FEATURES, tiny_store

    from tests_support import free_port

    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        stores = {"network": tiny_store(Path(tmp, "network"), NAME, versions=1)}
        stores["blend"] = tiny_store(Path(tmp, "blend"), NAME, versions=1, blend_weight=0.5)
        frame = stores["network"][1]
        body = json.dumps({"instances": frame[FEATURES].head(1).to_numpy().tolist()}).encode()
        ports = {name: free_port() for name in stores}
        servers = [
            subprocess.Popen([sys.executable, __file__, "--bare-server", cfg.tracking_uri, str(ports[name])], cwd=ROOT)
            for name, (cfg, _) in stores.items()
        ]
        try:
            targets = {name: f"http://127.0.0.1:{port}/predict" for name, port in ports.items()}
            runs = interleaved(targets, body, pairs)
        finally:
            for server in servers:
                server.terminate()
                server.wait(30)
    result = summarize(runs, "none (the replica's Predictor in uvicorn)", pairs, ("blend", "network"))
    return {k.replace("serve_", "serve_blend_", 1): v for k, v in result.items()}


def summarize(runs: dict, ingress: str, pairs: int, compared: tuple[str, str] = ("kiln", "bare")) -> dict:
    def median(target: str, c: int, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[target][c]), 2)

    result: dict = {
        "ingress": ingress,
        "pairs": pairs,
        "cpus": os.cpu_count(),
        "model": "tiny MLP, 4 features, string labels, 1 row per request",
    }
    for target in runs:
        result[target] = {f"c{c}": {k: median(target, c, k) for k in ("p50_ms", "p99_ms", "rps")} for c in LEVELS}
        result[target]["errors"] = sum(r["errors"] for c in LEVELS for r in runs[target][c])
    measured, against = compared
    for c in LEVELS:
        ratios = [k["rps"] / b["rps"] for k, b in zip(runs[measured][c], runs[against][c], strict=True)]
        added = [k["p50_ms"] - b["p50_ms"] for k, b in zip(runs[measured][c], runs[against][c], strict=True)]
        result[f"serve_throughput_ratio_c{c}"] = round(statistics.median(ratios), 3)
        result[f"serve_added_p50_ms_c{c}"] = round(statistics.median(added), 2)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingress", choices=("auto", "haproxy", "proxy", "both"), default="auto")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--bare-server", nargs=2, metavar=("TRACKING_URI", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--no-record", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", action="store_true", help="the blend against the network alone")
    args = parser.parse_args(argv)
    if args.bare_server:
        return bare_server(args.bare_server[0], NAME, int(args.bare_server[1]))
    if args.candidates:
        result = measure_candidates(args.pairs)
        print(json.dumps(result))
        return None if args.no_record else save_candidates(result)
    if args.ingress != "both":
        result = measure(args.ingress, args.pairs)
        print(json.dumps(result))
        return None if args.no_record else save(result)
    results = {}
    for ingress in ("haproxy", "proxy"):  # each in a fresh process: Serve reads its ingress settings at import
        out = subprocess.run(
            [sys.executable, __file__, "--ingress", ingress, "--pairs", str(args.pairs), "--no-record"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if out.returncode != 0:
            raise SystemExit(f"--ingress {ingress} failed:\n{out.stderr[-3000:]}")
        results[ingress] = json.loads(out.stdout.strip().splitlines()[-1])
    combined = {**results["haproxy"], "proxy": results["proxy"]}
    for c in LEVELS:
        combined[f"haproxy_vs_proxy_rps_c{c}"] = round(
            results["haproxy"]["kiln"][f"c{c}"]["rps"] / results["proxy"]["kiln"][f"c{c}"]["rps"], 3
        )
    print(json.dumps(combined))
    save(combined)


def save(result: dict) -> None:
    """Kiln's endpoint against the bare app."""
    detail = {
        "kiln": result["kiln"],
        "bare": result["bare"],
        **({"python_proxy_kiln": result["proxy"]["kiln"]} if "proxy" in result else {}),
        **{k: v for k, v in result.items() if k.startswith("haproxy_vs_proxy")},
    }
    throughput = f"bare FastAPI + uvicorn, same Predictor, 32 clients ({result['ingress']} ingress)"
    record_pair(
        "serve",
        result,
        {"target": 1.0, "baseline": throughput, "detail": detail},
        {"target": 3.0, "baseline": "bare FastAPI + uvicorn p50 at 1 client"},
    )


def save_candidates(result: dict) -> None:
    """The blend against the network alone."""
    record_pair(
        "serve_blend",
        result,
        {
            "baseline": "the same network alone, same Predictor and server, 32 clients, 1 row a request",
            "detail": {"blend": result["blend"], "network": result["network"]},
        },
        {"baseline": "the network alone's p50 at 1 client"},
    )


def record_pair(prefix: str, result: dict, throughput: dict, p50: dict) -> None:
    """<prefix>_throughput_ratio_c32 and <prefix>_added_p50_ms_c1 in results.json, with their own fields."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import record

    record(
        [
            {"name": f"{prefix}_throughput_ratio_c32", "value": result[f"{prefix}_throughput_ratio_c32"], "unit": "x",
             **throughput},
            {"name": f"{prefix}_added_p50_ms_c1", "value": result[f"{prefix}_added_p50_ms_c1"], "unit": "ms", **p50},
        ]
    )  # fmt: skip


if __name__ == "__main__":
    main()
