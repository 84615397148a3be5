"""`kiln`: run, validate, serve, ui. Errors become one line and an exit code (2 = bad config or data)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback

from pipelines import console, signals
from pipelines.config import KilnConfig, check_column_encoders, load_config, named_after_data
from pipelines.errors import ConfigError, DataError, ModelNotFound, SearchInterrupted

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ROWS_FAILED = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    signals.install()
    args = parser().parse_args(argv)
    # MLflow draws a progress bar for every artifact download (the report reads one back): noise between stages.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return args.handler(args)
    except ModelNotFound as err:
        console.error(str(err))
        _shutdown()
        return EXIT_FAILED
    except (ConfigError, DataError) as err:
        console.error(str(err))
        if args.verbose:
            traceback.print_exc()
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.say("\ninterrupted; shutting down")
        _shutdown()
        return signals.exit_code()
    except SystemExit as err:  # a library's sys.exit deep in a stage: never an exit without a reason
        if err.code in (0, None):
            raise
        console.error(f"stopped by a library's sys.exit({err.code!r}); run again with --verbose for its logs")
        _shutdown()
        return err.code if isinstance(err.code, int) else EXIT_FAILED
    except Exception as err:
        console.error(f"{type(err).__name__}: {' '.join(str(err).split())[:400]}")
        if args.verbose:
            traceback.print_exc()
        else:
            console.say("  (run again with --verbose for the full trace)")
        _shutdown()
        return EXIT_FAILED


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kiln", description="One YAML file to a live, versioned endpoint.")
    sub = top.add_subparsers(dest="command", required=True)

    def command(
        name: str,
        handler,
        help_text: str,
        *,
        positionals: tuple[tuple[str, dict], ...] = (),
        config_required: bool = False,
    ) -> argparse.ArgumentParser:
        """Every command the same way: its own arguments, then CONFIG (or --config), --set, --verbose."""
        p = sub.add_parser(name, help=help_text)
        for arg, options in positionals:
            p.add_argument(arg, **options)
        p.add_argument(
            "config",
            nargs=None if config_required else "?",
            help="YAML config file" + ("" if config_required else " (default: the defaults, storage ./kiln-runs)"),
        )
        if not config_required:
            p.add_argument("--config", dest="config_option", metavar="CONFIG", help="the same, as an option")
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value by dotted path (YAML value)",
        )
        p.add_argument("--verbose", action="store_true", help="show Ray's own output and full traces")
        p.set_defaults(handler=handler)
        return p

    run = command("run", cmd_run, "ingest, search, evaluate, register and serve", config_required=True)
    run.add_argument("--no-serve", action="store_true", help="stop after registering the model")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the last interrupted search of this config (finished trials are kept)",
    )
    command("validate", cmd_validate, "check the config and the data; start nothing", config_required=True)
    serve = command("serve", cmd_serve, "serve a registered model")
    serve.add_argument("--model", help="NAME, NAME@ALIAS or NAME/VERSION (default: registry.model_name@alias)")
    plan = command("plan", cmd_plan, "predict step, epoch and search time per worker count", config_required=True)
    plan.add_argument("--hardware", default="local", help="local (calibrated now), H100, A100, L4 or a YAML file")
    plan.add_argument("--workers", default="1,2,4", help="worker counts to compare, e.g. 1,2,4,8")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON (alone on stdout)")
    plan.add_argument("--png", help="also draw step time and efficiency against worker count here")
    command("report", cmd_report, "rebuild a run's HTML report from MLflow", positionals=(("run_id", {}),))
    command(
        "promote",
        cmd_promote,
        "point the alias at a registered version (load-checked first)",
        positionals=(("name", {}), ("version", {"type": int})),
    )
    command("rollback", cmd_rollback, "move the alias back to the previous champion", positionals=(("name", {}),))
    predict = command(
        "predict",
        cmd_predict,
        "predict the rows of a CSV or parquet file through the endpoint",
        positionals=(("name", {}),),
    )
    predict.add_argument("--file", required=True, help="CSV or parquet rows, columns named like the features")
    predict.add_argument("--url", help="endpoint base URL (default http://serve.host:serve.port)")
    score = command(
        "score",
        cmd_score,
        "score a CSV or parquet table, or a folder of images, with a registered version on Ray Data, into a file",
        positionals=(("model", {"help": "NAME, NAME@ALIAS or NAME/VERSION"}),),
    )
    score.add_argument("--input", required=True, help="a CSV or parquet file, a folder of them, or a folder of images")
    score.add_argument(
        "--output",
        required=True,
        help="the scored rows: a .parquet or .csv file (rows in input order), or a folder ending in / (parquet part "
        "files written by Ray Data where the actors run, each row with its number); a path or an object-store URI",
    )
    score.add_argument("--overwrite", action="store_true", help="replace the output (and its errors file) if it exists")
    command("runs", cmd_runs, "recent runs: status, best metric, duration, registered version")
    command("models", cmd_models, "registered models: versions, aliases, test metric")
    ui = command("ui", cmd_ui, "open the MLflow UI on this store")
    ui.add_argument("--port", type=int, default=5000)
    return top


def _config(args) -> KilnConfig:
    option = getattr(args, "config_option", None)
    if option and args.config and option != args.config:
        raise ConfigError(f"--config {option}: a config was also given as an argument ({args.config}); give one")
    args.config = args.config or option
    return load_config(args.config, args.overrides)


def cmd_predict(args) -> int:
    from serving import client

    cfg = _config(args)
    url = args.url or f"{cfg.serve.scheme}://{cfg.serve.host}:{cfg.serve.port}"
    if client.sends_token_in_clear(url):
        console.note(
            f"warning: --url {url}: plain HTTP to another machine; the bearer token in ${cfg.serve.token_env} "
            "crosses the network readable by anyone on the way (serve with serve.tls_certfile, use https://)"
        )
    client.check_serves(url, args.name, verify=cfg.serve.verify)
    for prediction in client.predict_file(url, args.file, verify=cfg.serve.verify):
        console.say(str(prediction))
    return EXIT_OK


def cmd_score(args) -> int:
    from pipelines.scoring import job

    cfg = _config(args)
    result = job.score(cfg, args.model, args.input, args.output, overwrite=args.overwrite, verbose=args.verbose)
    console.say(result.line)
    if result.rows_failed > cfg.score.max_error_rows:
        console.error(
            f"{result.rows_failed} rows failed (score.max_error_rows: {cfg.score.max_error_rows}); "
            f"their reasons: {result.errors}"
        )
        _shutdown()
        return EXIT_ROWS_FAILED
    _shutdown()
    return EXIT_OK


def cmd_runs(args) -> int:
    from pipelines.report import tables

    console.say(tables.runs_table(_config(args)))
    return EXIT_OK


def cmd_models(args) -> int:
    from pipelines.report import tables

    console.say(tables.models_table(_config(args)))
    return EXIT_OK


def cmd_report(args) -> int:
    from pipelines.report import page

    cfg = _config(args)
    try:
        tracking_run = page.collect(cfg, args.run_id)
    except Exception:
        raise ModelNotFound(f"no MLflow run {args.run_id!r} in {cfg.tracking_uri}") from None
    console.say(f"report: {page.build(cfg, tracking_run.run_id)}")
    return EXIT_OK


def cmd_promote(args) -> int:
    from pipelines.tracking import registry

    cfg = _config(args)
    registry.promote(cfg, args.name, args.version)
    console.say(f"{args.name}@{cfg.registry.alias} -> v{args.version}")
    return EXIT_OK


def cmd_rollback(args) -> int:
    from pipelines.tracking import registry

    cfg = _config(args)
    current, previous = registry.rollback(cfg, args.name)
    console.say(f"{args.name}@{cfg.registry.alias}: v{current} -> v{previous}")
    return EXIT_OK


def cmd_validate(args) -> int:
    from pipelines import run
    from pipelines.data import pretrained, schema, sources

    cfg = _config(args)
    run.preflight(cfg)
    checked = sources.inspect(cfg.data, cfg.storage_root)
    cfg = run.decide_space(run.for_task(cfg, checked.task), checked)
    check_column_encoders(cfg, checked.types)
    pretrained.columns(
        cfg.model, checked.types, cfg.train.finetune
    )  # each pretrained encoder's folder found and safe to load
    console.say(schema.table(checked.columns), *sources.describe(checked, cfg.data))
    target = f"{checked.frame[cfg.data.label].nunique()} classes" if cfg.task == "classification" else "regression"
    console.say(
        f"{args.config}: ok ({len(checked.frame)} rows, {len(checked.features)} features, {target}, "
        f"{cfg.tune.num_samples} trials by {cfg.tune.metric})"
    )
    return EXIT_OK


def cmd_plan(args) -> int:
    from pipelines import run
    from pipelines.plan import show

    cfg = _config(args)
    try:
        workers = sorted({int(n) for n in args.workers.split(",")})
    except ValueError:
        raise ConfigError(f"--workers: expected numbers like 1,2,4 (got {args.workers!r})") from None
    if not workers or workers[0] < 1:
        raise ConfigError(f"--workers: counts must be at least 1 (got {args.workers!r})")
    result = run.plan(cfg, workers=workers, hardware=args.hardware, say=console.note if args.json else console.say)
    console.say(json.dumps(result, indent=2) if args.json else show.plan_table(result))
    if args.png:
        show.save_png(result, args.png)
        (console.note if args.json else console.say)(f"plot: {args.png}")
    return EXIT_OK


def cmd_run(args) -> int:
    from pipelines import run
    from pipelines.tracking import mlflow_runs

    cfg = _config(args)
    if named_after_data(cfg, args.overrides):
        console.say(f"  run named {cfg.name!r} after data.source (set name=... to choose another)")
        model = cfg.registry.model_name
        console.say(f"  its model registers as {model!r} (set registry.model_name=... to choose another)")
    try:
        result = run.run(cfg, serve=not args.no_serve, verbose=args.verbose, resume=args.resume)
    except SearchInterrupted as stopped:
        _shutdown()
        again = _again("run", args, every_override=True)
        console.error(f"search {stopped} interrupted; continue it with: {again} --resume")
        return signals.exit_code()
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    test, choice = result.test, result.choice
    if choice is not None and choice.runners_up:  # registry.candidates competed: the winner, then the rest
        said = f"the {choice.test_line()}"
    else:
        said = f"{test.primary}={test.value:.4f}"
        said += f", {result.baseline.name} {result.baseline.metrics[test.primary]:.4f}" if result.baseline else ""
    console.say(f"\nDone: {result.registered.name} v{result.registered.version}, {said} ({timings})")
    from pipelines.model import baseline

    network_won = choice is None or choice.winner.name == "network"
    loss = baseline.verdict(test.primary, test.value, result.baseline) if network_won else None
    if loss:
        console.say(f"Note: {loss}")
    links = mlflow_runs.ui_links(cfg, "http://127.0.0.1:5000")
    console.say(f"MLflow UI: {_again('ui', args)}" + (", then:" if links else ""), *(f"  {link}" for link in links))
    if result.endpoint is None:
        from pipelines.cluster import runtime

        runtime.stop()
        return EXIT_OK
    _announce(result.endpoint, json_rows(result.example.head(2)), cfg)
    return _serve_until_interrupted()


def cmd_serve(args) -> int:
    from pipelines import deploy
    from pipelines.cluster import runtime
    from pipelines.tracking import registry
    from serving import auth

    cfg = _config(args)
    ref = args.model or registry.champion_ref(cfg)
    target = deploy.check_servable(cfg, ref)  # before the runtime starts: a bad version costs nothing
    auth.read_token(cfg.serve)
    runtime.start(cfg, verbose=args.verbose, env=deploy.ingress_env(cfg))
    url = deploy.start_serving(cfg, ref, checked=target)
    _announce(url, None, cfg)
    return _serve_until_interrupted()


def cmd_ui(args) -> int:
    cfg = _config(args)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        cfg.tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    if cfg.tracking.uri is None:
        if not (cfg.storage_root / "mlflow.db").exists():
            raise ConfigError(f"storage.root: no MLflow store at {cfg.storage_root}; run 'kiln run CONFIG' first")
        command += ["--default-artifact-root", (cfg.storage_root / "mlartifacts").as_uri()]
    from pipelines.tracking import mlflow_runs

    base = f"http://127.0.0.1:{args.port}"
    console.say(
        f"MLflow UI for {cfg.tracking_uri}: {base}  (Ctrl-C to stop)",
        *(f"  {link}" for link in mlflow_runs.ui_links(cfg, base)),
    )
    sys.stdout.flush()
    os.execv(command[0], command)  # the UI takes this process over: signals reach it directly


def _again(command: str, args, *, every_override: bool = False) -> str:
    """The command line to run `command` on the same store (with every --set: the same search)."""
    parts = ["kiln", command] + ([args.config] if args.config else [])
    parts += [
        f"--set {shlex.quote(o)}" for o in args.overrides if every_override or o.startswith(("storage.", "tracking."))
    ]
    return " ".join(parts)


def json_rows(frame) -> list[list]:
    """A frame's rows as a request sends them: a missing cell is null (JSON has no NaN), an image's bytes
    {"b64": ...}, a date or time as the text its level was trained on (a CSV's 1970-01-01 reads as a date)."""
    import base64
    import datetime

    import pandas as pd

    from pipelines.data.preprocessing import plain

    def cell(value):
        if isinstance(value, bytes):
            return {"b64": base64.b64encode(value).decode()}
        if isinstance(value, datetime.date | datetime.time) and not pd.isna(value):
            return str(value)  # preprocessing.level's name for it
        return None if pd.isna(value) else plain(value)

    return [[cell(value) for value in row] for row in frame.itertuples(index=False, name=None)]


def _announce(url: str, rows: list | None, cfg: KilnConfig) -> None:
    import requests

    from serving import auth

    console.say(f"\nEndpoint: {url}/predict   (health: {url}/healthz)")
    token = f' -H "Authorization: Bearer ${cfg.serve.token_env}"' if cfg.serve.auth == "token" else ""
    if token:
        console.say(f"  every route but the health checks needs the bearer token in ${cfg.serve.token_env}")
    if rows is None:
        console.say("Serving until Ctrl-C.")
        return
    body = json.dumps({"instances": rows})
    ca = f" --cacert {cfg.serve.tls_certfile}" if cfg.serve.tls_certfile else ""
    console.say(f"Try it:\n  curl -s{ca} -X POST {url}/predict -H 'Content-Type: application/json'{token} -d '{body}'")
    answer = requests.post(
        f"{url}/predict",
        json={"instances": rows},
        headers=auth.client_headers(cfg.serve),
        timeout=60,
        verify=cfg.serve.verify,
    )
    console.say(f"Sample answer ({answer.status_code}): {answer.text}")
    console.say("Serving until Ctrl-C.")


def _serve_until_interrupted() -> int:
    signals.install()  # Tune leaves its own SIGINT handler behind after a search; take Ctrl-C back
    try:
        signals.wait_forever()
    except KeyboardInterrupt:
        console.say("\nshutting down the endpoint")
        _shutdown()
        return signals.exit_code()


def _shutdown() -> None:
    try:
        import ray

        if ray.is_initialized():
            from pipelines.cluster import runtime

            runtime.stop()
    except Exception:  # already gone
        pass


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
