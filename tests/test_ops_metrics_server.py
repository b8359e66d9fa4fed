"""``watch --listen``: the ``/metrics`` server is bounded (connections, threads, a socket timeout),
answers HEAD, listens on IPv6 as ``--listen '[::1]:PORT'`` says, and no idle or slow client can
delay the monitoring loop (issue 17, item 4). Loopback only, with bounded counts and times.
"""

from __future__ import annotations

import http.client
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from diskguard.ops import prometheus
from diskguard.ops.prometheus import MAX_CONNECTIONS, TEXTFILE_NAME, MetricsServer

#: Idle connections opened against a monitor limited to 256 descriptors (the issue's case).
IDLE_CONNECTIONS = 300


def wait_until(what: str, probe: Callable[[], bool], deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not probe():
        if time.monotonic() > end:
            pytest.fail(f'{what}: not within {deadline:g} s')
        time.sleep(0.05)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsServer]:
    monkeypatch.setattr(prometheus, 'CONNECTION_TIMEOUT', 0.5)
    s = MetricsServer('127.0.0.1', 0)
    s.update('diskguard_up 1\n')
    try:
        yield s
    finally:
        s.close()


def test_head_answers_like_get_without_a_body(server: MetricsServer) -> None:
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    conn.request('HEAD', '/metrics')
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader('Content-Length') == str(len('diskguard_up 1\n'))
    assert response.read() == b''
    conn.close()


def test_ipv6_loopback_as_the_help_says() -> None:
    s = MetricsServer('::1', 0)
    try:
        conn = http.client.HTTPConnection('::1', s.port, timeout=10)
        conn.request('GET', '/metrics')
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        s.close()


def test_a_silent_client_is_dropped_after_the_timeout(server: MetricsServer) -> None:
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as idle:
        started = time.monotonic()
        # Returns once the server closes it (recv would raise after our own 10 s timeout).
        assert idle.recv(1024) == b''
        assert time.monotonic() - started < 5


def test_connections_beyond_the_cap_are_closed_not_queued(server: MetricsServer) -> None:
    held = [socket.create_connection(('127.0.0.1', server.port), timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        extra = [socket.create_connection(('127.0.0.1', server.port), timeout=10) for _ in range(20)]
        for s in extra:
            # Closed by the server straight away: an empty read, or a reset.
            try:
                assert s.recv(16) == b''
            except ConnectionResetError:
                pass
            s.close()
    finally:
        for s in held:
            s.close()
    # Once the idle ones are gone, scrapes are answered again.
    wait_until('a scrape after the idle clients left', lambda: scrape(server.port) == 200, deadline=10)


def scrape(port: int) -> int | None:
    try:
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=2)
        conn.request('GET', '/metrics')
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
def test_idle_connections_never_delay_the_loop(open_dir: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE_CONNECTIONS + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    port = free_port()
    textfile = open_dir / 'textfile'
    textfile.mkdir()
    watch = subprocess.Popen(
        [
            'sh', '-c', 'ulimit -n 256 && exec "$@"', 'sh',
            sys.executable, '-m', 'diskguard', 'watch', str(open_dir), '--interval', '1s',
            '--listen', f'127.0.0.1:{port}', '--textfile', str(textfile),
            '--state-file', str(open_dir / 'state.json'),
        ],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    idle: list[socket.socket] = []
    try:
        wait_until('the monitor serves /metrics', lambda: scrape(port) == 200)
        for _ in range(IDLE_CONNECTIONS):
            try:
                idle.append(socket.create_connection(('127.0.0.1', port), timeout=5))
            except OSError:
                break  # the listen queue is full: the kernel refuses, which is bounded too
        assert len(idle) >= MAX_CONNECTIONS

        def rewritten(times: int) -> Callable[[], bool]:
            seen: set[int] = set()

            def probe() -> bool:
                try:
                    seen.add(os.stat(textfile / TEXTFILE_NAME).st_ino)
                except FileNotFoundError:
                    pass
                return len(seen) > times

            return probe

        # Each step renames a new textfile into place: three steps in at most ten seconds.
        wait_until('three textfile rewrites with the idle connections open', rewritten(3), deadline=10)
        wait_until('a scrape answered with the idle connections open', lambda: scrape(port) == 200, 20)
    finally:
        for s in idle:
            s.close()
        watch.terminate()
        _, stderr = watch.communicate(timeout=30)
    assert watch.returncode == 0, stderr
    assert 'cannot write' not in stderr and 'cannot save' not in stderr, stderr
