"""Prometheus output end to end: the exposition text (checked by promtool), the atomic textfile read
by Debian's prometheus-node-exporter, ``watch --listen`` scraped directly, both scraped by a real
``prometheus`` on loopback and the gauges queried back through its HTTP API, and the example rules.

Needs the Debian packages ``prometheus`` and ``prometheus-node-exporter`` (promtool comes with the
first); the tests fail, naming them, when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import diskguard
import pytest
from diskguard.ops.check import Limits, check_path
from diskguard.ops.prometheus import MetricsServer, escape, render, write_textfile

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = 'prometheus prometheus-node-exporter'


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f'{name} is not installed: these tests need the Debian packages {PACKAGES} '
            f'(apt-get install -y {PACKAGES})'
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by a test; each is stopped in teardown (SIGTERM, then SIGKILL)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
    for proc in started:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def wait_for(what: str, probe: object, deadline: float = 60.0) -> object:
    """Calls ``probe()`` until it returns something truthy, for at most ``deadline`` seconds."""
    end = time.monotonic() + deadline
    last: object = None
    while time.monotonic() < end:
        try:
            last = probe()  # type: ignore[operator]
        except OSError as err:
            last = err
        if last and not isinstance(last, OSError):
            return last
        time.sleep(0.5)
    pytest.fail(f'timed out waiting for {what}: last answer {last!r}')


def test_rendered_text_passes_promtool_and_has_no_timestamps(tmpfs: Path) -> None:
    results = [check_path(str(tmpfs), Limits()), check_path('/nonexistent-dir/"odd"\nname', Limits())]
    text = render(results, time_to_full={str(tmpfs): None})
    checked = subprocess.run(
        [tool('promtool'), 'check', 'metrics'], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert text.endswith('\n')
    samples = [line for line in text.splitlines() if not line.startswith('#')]
    # name{labels} value, and nothing after: a timestamp makes node_exporter drop the whole file.
    assert all(len(line.rsplit('} ', 1)[1].split()) == 1 for line in samples)
    assert (
        f'diskguard_avail_bytes{{path="{tmpfs}",mountpoint="{tmpfs}",device="tmpfs",fstype="tmpfs"}}' in text
    )
    assert [line.split('{')[0] for line in samples if line.endswith(' +Inf')] == [
        'diskguard_time_to_full_seconds'
    ]
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    first = write_textfile(str(tmp_path), 'a 1\n')
    second = write_textfile(str(tmp_path), 'a 2\n')
    assert first == second == str(tmp_path / 'diskguard.prom')
    assert Path(second).read_text() == 'a 2\n'
    assert sorted(os.listdir(tmp_path)) == ['diskguard.prom']
    with pytest.raises(ValueError, match='not a directory'):
        write_textfile(str(tmp_path / 'diskguard.prom'), 'x 1\n')


def test_metrics_server_serves_only_metrics() -> None:
    server = MetricsServer('127.0.0.1', 0)
    try:
        server.update('x 1\n')
        assert get(f'http://127.0.0.1:{server.port}/metrics') == 'x 1\n'
        with pytest.raises(urllib.error.HTTPError) as err:
            get(f'http://127.0.0.1:{server.port}/')
        assert err.value.code == 404
        err.value.close()
    finally:
        server.close()


def query(prometheus: str, expr: str) -> list[dict[str, object]]:
    url = f'{prometheus}/api/v1/query?{urllib.parse.urlencode({"query": expr})}'
    answer = json.loads(get(url))
    assert answer['status'] == 'success', answer
    return list(answer['data']['result'])


def test_node_exporter_and_prometheus_read_our_gauges(
    tmpfs: Path, tmp_path: Path, servers: list[subprocess.Popen[bytes]]
) -> None:
    node_exporter, prometheus = tool('prometheus-node-exporter'), tool('prometheus')
    textfiles = tmp_path / 'textfile'
    textfiles.mkdir()
    (tmpfs / 'data').write_bytes(b'\1' * 4 * 1024 * 1024)
    done = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'check', str(tmpfs), '--textfile', str(textfiles)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    node_port, watch_port, prom_port = free_port(), free_port(), free_port()
    servers.append(
        subprocess.Popen(
            [
                node_exporter,
                f'--web.listen-address=127.0.0.1:{node_port}',
                '--collector.disable-defaults',
                '--collector.textfile',
                f'--collector.textfile.directory={textfiles}',
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    servers.append(
        subprocess.Popen(
            [
                sys.executable, '-m', 'diskguard', 'watch', str(tmpfs), '--interval', '1s',
                '--listen', f'127.0.0.1:{watch_port}', '--state-file', str(tmp_path / 'state.json'),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    )  # fmt: skip
    config = tmp_path / 'prometheus.yml'
    config.write_text(
        'global: {scrape_interval: 1s}\n'
        'scrape_configs:\n'
        f"  - {{job_name: node, static_configs: [{{targets: ['127.0.0.1:{node_port}']}}]}}\n"
        f"  - {{job_name: diskguard, static_configs: [{{targets: ['127.0.0.1:{watch_port}']}}]}}\n"
    )
    servers.append(
        subprocess.Popen(
            [
                prometheus,
                f'--config.file={config}',
                f'--storage.tsdb.path={tmp_path / "tsdb"}',
                f'--web.listen-address=127.0.0.1:{prom_port}',
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    api = f'http://127.0.0.1:{prom_port}'
    u = diskguard.usage(tmpfs)
    from_textfile = wait_for(
        'diskguard_avail_bytes from node_exporter',
        lambda: query(api, f'diskguard_avail_bytes{{job="node",path="{tmpfs}"}}'),
    )
    assert isinstance(from_textfile, list)
    assert int(from_textfile[0]['value'][1]) == u.avail  # type: ignore[index]
    assert from_textfile[0]['metric']['fstype'] == 'tmpfs'  # type: ignore[index]
    level = wait_for(
        'diskguard_level from watch --listen',
        lambda: query(api, f'diskguard_level{{job="diskguard",path="{tmpfs}"}}'),
    )
    assert isinstance(level, list) and level[0]['value'][1] == '0'  # type: ignore[index]
    size = query(api, f'diskguard_size_bytes{{job="diskguard",path="{tmpfs}"}}')
    assert int(size[0]['value'][1]) == u.total  # type: ignore[index]
    # The watch daemon exits cleanly on SIGTERM.
    watch = servers[1]
    watch.send_signal(signal.SIGTERM)
    _, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    assert b'SIGTERM received' in err


def test_example_rules_pass_promtool() -> None:
    rules = ROOT / 'examples' / 'prometheus' / 'diskguard-rules.yml'
    done = subprocess.run(
        [tool('promtool'), 'check', 'rules', str(rules)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'SUCCESS: 7 rules found' in done.stdout
