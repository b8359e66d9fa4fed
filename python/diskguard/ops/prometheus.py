"""Prometheus output: the text exposition format, an atomic textfile for node_exporter's textfile
collector, and a small ``/metrics`` server.

node_exporter's rules (monitoring.md §5.3): no timestamps (a file with them is skipped whole), UTF-8
with ``\\n`` line endings, written to a temporary file and renamed so a scrape never sees half a file.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from . import atomic
from . import escape as names
from .budgets import BudgetResult
from .check import UNKNOWN, FsResult

#: The textfile's name inside ``--textfile DIR``.
TEXTFILE_NAME = 'diskguard.prom'

_HELP = {
    'diskguard_up': 'Whether the filesystem under the path could be measured (1) or not (0).',
    'diskguard_size_bytes': 'Filesystem size in bytes (df Size).',
    'diskguard_used_bytes': 'Used bytes (df Used).',
    'diskguard_avail_bytes': 'Bytes available to non-root users (df Avail).',
    'diskguard_reserved_bytes': "Root's reserve in bytes, not available to training jobs.",
    'diskguard_inodes': 'Inodes in total (only where the filesystem counts them).',
    'diskguard_inodes_free': 'Free inodes.',
    'diskguard_level': 'Threshold level: 0 ok, 1 warning, 2 critical, 3 unknown.',
    'diskguard_time_to_full_seconds': 'Forecast seconds until full (+Inf when not filling).',
    'diskguard_budget_bytes': 'Byte budget of a directory.',
    'diskguard_budget_used_bytes': 'Bytes allocated under a budgeted directory.',
    'diskguard_budget_level': 'Budget level: 0 ok, 1 warning (near), 2 critical (exceeded), 3 unknown.',
}


def escape(value: str) -> str:
    """A label value in the exposition format: backslash, double quote and newline escaped, and
    any name made writable as UTF-8 (:func:`diskguard.ops.escape.prometheus_label`)."""
    return names.prometheus_label(value)


def _labels(pairs: dict[str, str]) -> str:
    return '{' + ','.join(f'{k}="{escape(v)}"' for k, v in pairs.items()) + '}'


def _number(value: float) -> str:
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def fs_labels(r: FsResult) -> dict[str, str]:
    """``path`` (as given), ``mountpoint`` (the host's when known), ``device`` and ``fstype``."""
    u = r.usage
    mountpoint = r.host_path or (u.mount_point if u is not None and u.mount_point else '')
    return {
        'path': r.path,
        'mountpoint': mountpoint or '',
        'device': (u.device or '') if u is not None else '',
        'fstype': u.fs_type if u is not None else '',
    }


def render(
    results: Iterable[FsResult],
    budgets: Iterable[BudgetResult] = (),
    time_to_full: dict[str, float | None] | None = None,
) -> str:
    """The metrics as exposition text, grouped by metric with HELP and TYPE lines."""
    samples: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(name: str, labels: dict[str, str], value: float) -> None:
        samples[name].append(f'{name}{_labels(labels)} {_number(value)}')

    for r in results:
        labels = fs_labels(r)
        add('diskguard_up', labels, 0 if r.usage is None else 1)
        add('diskguard_level', labels, r.state)
        u = r.usage
        if u is None:
            continue
        add('diskguard_size_bytes', labels, u.total)
        add('diskguard_used_bytes', labels, u.used)
        add('diskguard_avail_bytes', labels, u.avail)
        add('diskguard_reserved_bytes', labels, u.reserved)
        if u.inodes_total is not None and u.inodes_free is not None:
            add('diskguard_inodes', labels, u.inodes_total)
            add('diskguard_inodes_free', labels, u.inodes_free)
        if time_to_full is not None and r.path in time_to_full:
            ttf = time_to_full[r.path]
            add('diskguard_time_to_full_seconds', labels, math.inf if ttf is None else ttf)
    for b in budgets:
        labels = {'directory': b.directory, 'owner': b.owner, 'pattern': b.pattern}
        add('diskguard_budget_bytes', labels, b.limit)
        add('diskguard_budget_level', labels, b.state)
        if b.state != UNKNOWN:
            add('diskguard_budget_used_bytes', labels, b.allocated)
    lines: list[str] = []
    for name, rows in samples.items():
        if rows:
            lines += [f'# HELP {name} {_HELP[name]}', f'# TYPE {name} gauge', *rows]
    return '\n'.join(lines) + '\n'


def textfile_directory(directory: str) -> str:
    """``directory`` if it is one (``--textfile DIR``), else ``ValueError`` naming the option."""
    if not os.path.isdir(directory):
        raise ValueError(
            f"--textfile={directory!r}: not a directory (give node_exporter's textfile directory)"
        )
    return directory


def write_textfile(directory: str, text: str, name: str = TEXTFILE_NAME) -> str:
    """Writes ``directory/name`` atomically (an exclusively created temporary file, fsync, rename);
    returns its path."""
    final = os.path.join(textfile_directory(directory), name)
    # A random hidden temporary name (never *.prom, so node_exporter never reads a half-written
    # file), created exclusively: see diskguard.ops.atomic. 0644 so node_exporter can read it.
    atomic.write_file(final, text.encode('utf-8'), 0o644)
    return final


#: Connections served at once; more are closed at once (a scraper retries next interval).
MAX_CONNECTIONS = 8
#: Seconds a connection may stay silent (reading the request, writing the reply) before it is closed.
CONNECTION_TIMEOUT = 5.0


class _BoundedServer(HTTPServer):
    """An HTTP server that handles at most :data:`MAX_CONNECTIONS` connections at once, each on a
    short-lived thread with a socket timeout: idle or slow clients can hold a few slots for a few
    seconds, never file descriptors or threads without bound, and never the monitoring loop."""

    daemon_threads = True
    request_queue_size = 16

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        # '::1' or any other IPv6 literal listens on IPv6 (--listen '[::1]:9101').
        self.address_family = socket.AF_INET6 if ':' in address[0] else socket.AF_INET
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            # Every slot is taken: close this one now rather than queue it (and its descriptor).
            self.shutdown_request(request)
            return
        try:
            threading.Thread(
                target=self._serve_one, args=(request, client_address), name='diskguard-scrape', daemon=True
            ).start()
        except RuntimeError:  # no thread can be started now: the same as no slot
            self.slots.release()
            self.shutdown_request(request)

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError:
            pass  # the client timed out or went away: not news
        finally:
            self.shutdown_request(request)
            self.slots.release()


class MetricsServer:
    """Serves the latest text at ``/metrics`` (GET and HEAD) from a background thread until
    :meth:`close`. Bounded: see :class:`_BoundedServer`."""

    def __init__(self, host: str, port: int) -> None:
        self._text = '# no measurement yet\n'
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = CONNECTION_TIMEOUT

            def do_GET(self) -> None:
                self._reply(with_body=True)

            def do_HEAD(self) -> None:
                self._reply(with_body=False)

            def _reply(self, with_body: bool) -> None:
                if self.path.split('?', 1)[0] != '/metrics':
                    self.send_error(404, 'only /metrics is served')
                    return
                body = server.text.encode('utf-8', 'backslashreplace')
                self.send_response(200)
                self.send_header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # a scrape every 15 s is not news

        self._httpd = _BoundedServer((host, port), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name='diskguard-metrics', daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def text(self) -> str:
        with self._lock:
            return self._text

    def update(self, text: str) -> None:
        with self._lock:
            self._text = text

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
