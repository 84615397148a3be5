"""Free ports come from between Ray's worker ports and the kernel's ephemeral range, so an outgoing connection
cannot take one between the pick and the bind."""

import socket

from pipelines.cluster import ports


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    picked = ports.free_ports(4)
    assert len(set(picked)) == 4
    assert all(ports.RAY_WORKER_PORTS_END < p < ports.ephemeral_start() for p in picked)
    for port in picked:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_picked(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        monkeypatch.setattr(ports.random, "sample", lambda population, k: [taken, *population[:k]])
        assert taken not in ports.free_ports(3)


def test_with_no_gap_below_the_ephemeral_range_the_kernel_picks(monkeypatch):
    monkeypatch.setattr(ports, "ephemeral_start", lambda: ports.RAY_WORKER_PORTS_END + 10)
    picked = ports.free_ports(2)
    assert len(set(picked)) == 2 and all(p > 0 for p in picked)
