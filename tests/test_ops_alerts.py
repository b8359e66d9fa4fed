"""Alert channels against real local servers: an HTTP server that records POSTs (generic, WeCom and
Slack payloads; failures retried with backoff, the URL never logged) and an aiosmtpd SMTP server
(plain, STARTTLS and TLS with a self-signed certificate, login from a file or the environment; the
password never logged)."""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import run
from diskguard.ops.alerts import (
    Alert,
    Channel,
    Delivery,
    Email,
    SmtpSettings,
    Webhook,
    deliver,
    host_name,
    smtp_login,
    webhook_url,
)
from diskguard.ops.outbox import Outbox, Pending
from diskguard.ops.redact import redact, secret_forms

SECRET = 'key-3f9a1c0e'
PASSWORD = 'hunter2-secret'


class Recorder:
    """A local HTTP server that records each POST and answers with ``status`` (with a ``Location``
    header when ``location`` is set), and counts the GETs it is sent (``gets``: their paths)."""

    def __init__(self, status: int = 200, port: int = 0, echo_path: bool = False) -> None:
        self.bodies: list[Any] = []
        self.raw: list[bytes] = []
        self.paths: list[str] = []
        self.answers: list[int] = []
        self.gets: list[str] = []
        self.status = status
        self.location: str | None = None
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers['Content-Length'])
                raw = self.rfile.read(length)
                recorder.raw.append(raw)
                recorder.bodies.append(json.loads(raw))
                recorder.paths.append(self.path)
                recorder.answers.append(recorder.status)
                # A proxy that echoes the request in its reason phrase, as some do on errors.
                self.send_response(recorder.status, f'failed {self.path}' if echo_path else None)
                if recorder.location is not None:
                    self.send_header('Location', recorder.location)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def do_GET(self) -> None:
                # A page anyone can fetch: a client that turned a redirected POST into a GET lands here.
                recorder.gets.append(self.path)
                self.send_response(200)
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'ok')

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/send?key={SECRET}'

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def http() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


ALERT = Alert(
    'CRITICAL', '[diskguard] CRITICAL on host', '/data 97.0% used, 1.0 GiB avail', {'paths': ['/data']}
)


@pytest.mark.parametrize('fmt', ['generic', 'wecom', 'slack'])
def test_webhook_payloads(http: Recorder, fmt: str) -> None:
    assert deliver([Webhook(http.url, fmt)], ALERT) == [Delivery('webhook (' + fmt + ') to 127.0.0.1', True)]
    (body,) = http.bodies
    assert http.paths == [f'/send?key={SECRET}']
    if fmt == 'wecom':
        assert body == {'msgtype': 'text', 'text': {'content': ALERT.as_text()}}
    elif fmt == 'slack':
        assert body == {'text': ALERT.as_text()}
    else:
        assert body['state'] == 'CRITICAL' and body['text'] == ALERT.text and body['details'] == ALERT.details
        assert body['source'] == 'diskguard' and body['host']


def test_a_failing_webhook_is_retried_with_backoff_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    failing = Recorder(status=500)
    pauses: list[float] = []
    try:
        with caplog.at_level(logging.WARNING, logger='diskguard.alerts'):
            outcome = deliver([Webhook(failing.url)], ALERT, attempts=3, backoff=0.5, sleep=pauses.append)
    finally:
        failing.close()
    assert [(d.channel, d.ok) for d in outcome] == [('webhook (generic) to 127.0.0.1', False)]
    assert len(failing.bodies) == 3 and pauses == [0.5, 1.0]
    assert 'HTTP Error 500' in caplog.text and SECRET not in caplog.text


def test_an_unreachable_webhook_never_raises_nor_logs_its_url(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger='diskguard.alerts'):
        outcome = deliver(
            [Webhook(f'http://127.0.0.1:1/x?key={SECRET}')], ALERT, attempts=2, sleep=lambda _: None
        )
    assert [(d.channel, d.ok) for d in outcome] == [('webhook (generic) to 127.0.0.1', False)]
    assert 'Connection refused' in (outcome[0].error or '') and SECRET not in (outcome[0].error or '')
    assert caplog.text.count('failed') == 2 and SECRET not in caplog.text


@pytest.mark.parametrize('url', ['ftp://x', 'not a url', '', f'file:///etc/{SECRET}'])
def test_bad_webhook_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match='expected an http') as err:
        Webhook(url)
    assert SECRET not in str(err.value)


def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused until a server takes it)."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """An aiosmtpd server on loopback that keeps what it receives; optional TLS and login."""

    def __init__(
        self, tls: Any = None, starttls: Any = None, login: tuple[str, str] | None = None, port: int = 0
    ) -> None:
        self.messages: list[Any] = []
        self.logins: list[str] = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                mailbox.messages.append(
                    (envelope.rcpt_tos, message_from_bytes(envelope.content, policy=default))
                )
                return '250 OK'

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and login is not None
            ok = ok and (data.login.decode(), data.password.decode()) == login
            if ok:
                mailbox.logins.append(data.login.decode())
            return AuthResult(success=ok)

        kwargs: dict[str, Any] = {'authenticator': authenticator, 'auth_require_tls': False}
        if starttls is not None:
            kwargs['tls_context'] = starttls
        if tls is not None:
            kwargs['ssl_context'] = tls
        self.port = port or free_port()
        self.controller = Controller(Handler(), hostname='127.0.0.1', port=self.port, **kwargs)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def test_email_plain_with_login_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    box = Mailbox(login=('ops', PASSWORD))
    try:
        user, password = smtp_login(None, {'DISKGUARD_SMTP_USER': 'ops', 'DISKGUARD_SMTP_PASSWORD': PASSWORD})
        settings = SmtpSettings('127.0.0.1', box.port, 'none', 'guard@example.com', user, password)
        assert deliver([Email(['a@example.com', 'b@example.com'], settings)], ALERT) == [
            Delivery(f'e-mail via 127.0.0.1:{box.port}', True)
        ]
    finally:
        box.close()
    ((rcpt, msg),) = box.messages
    assert rcpt == ['a@example.com', 'b@example.com'] and box.logins == ['ops']
    assert msg['Subject'] == ALERT.title and msg['From'] == 'guard@example.com'
    assert ALERT.text in msg.get_content()
    closed = SmtpSettings('127.0.0.1', 1, 'none', None, 'ops', PASSWORD)
    with caplog.at_level(logging.WARNING, logger='diskguard.alerts'):
        (failed,) = deliver([Email(['a@example.com'], closed)], ALERT, attempts=2, sleep=lambda _: None)
    assert failed.channel == 'e-mail via 127.0.0.1:1' and not failed.ok
    assert 'Connection refused' in caplog.text and PASSWORD not in caplog.text


@pytest.fixture(scope='module')
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp('cert')
    key, cert = where / 'key.pem', where / 'cert.pem'
    subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
         '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', str(key), '-out', str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.mark.parametrize('security', ['starttls', 'tls'])
def test_email_over_starttls_and_tls(
    certificate: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, security: str
) -> None:
    import ssl

    key, cert = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    # The client verifies the server as usual; this test's CA is the self-signed certificate.
    monkeypatch.setenv('SSL_CERT_FILE', str(cert))
    box = Mailbox(**{security: server_context}, login=('ops', PASSWORD))
    login_file = tmp_path / 'login'
    login_file.write_text(f'ops\n{PASSWORD}\n')
    try:
        user, password = smtp_login(str(login_file), {})
        settings = SmtpSettings('127.0.0.1', box.port, security, None, user, password)
        assert all(d.ok for d in deliver([Email(['a@example.com'], settings)], ALERT, attempts=1))
    finally:
        box.close()
    assert len(box.messages) == 1 and box.logins == ['ops']


def test_login_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='both DISKGUARD_SMTP_USER and DISKGUARD_SMTP_PASSWORD'):
        smtp_login(None, {'DISKGUARD_SMTP_USER': 'ops'})
    one_line = tmp_path / 'login'
    one_line.write_text('ops\n')
    with pytest.raises(ValueError, match='password on the second'):
        smtp_login(str(one_line), {})
    assert smtp_login(None, {}) == (None, None)
    with pytest.raises(ValueError, match='e-mail addresses'):
        Email(['x@y.z\r\nBcc: evil@example.com'], SmtpSettings())
    with pytest.raises(ValueError, match='smtp-security'):
        Email(['x@y.z'], SmtpSettings(security='ssl3'))


def test_password_on_the_command_line_is_not_an_option() -> None:
    done = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'check', '/', '--email', 'a@b.c', '--smtp-password', 'x'],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3 and 'unrecognized arguments' in done.stdout
    helps = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'watch', '--help'],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert '--smtp-login-file' in helps.stdout and 'password' not in helps.stdout.replace(
        'password on line 2', ''
    )


# -- secrets, bounded delivery, names as data (issue 17), headers (issue 20) ----------------------------


class EchoingSmtp:
    """A raw SMTP server on loopback that refuses AUTH PLAIN and echoes its base64 argument back in the
    error, as some servers do: the client must not put that in a log."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile('rwb') as f:
                f.write(b'220 echo ESMTP\r\n')
                f.flush()
                for raw in f:
                    line = raw.decode().strip()
                    if line.upper().startswith('EHLO'):
                        f.write(b'250-echo\r\n250 AUTH PLAIN\r\n')
                    elif line.upper().startswith('AUTH'):
                        f.write(f'535 5.7.8 credentials {line.split()[-1]} rejected\r\n'.encode())
                    else:
                        f.write(b'221 bye\r\n')
                        f.flush()
                        break
                    f.flush()

    def close(self) -> None:
        self.sock.close()


def test_secrets_are_redacted_in_every_form(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 17.5: a reason phrase echoing the path and query, an SMTP server echoing AUTH PLAIN's
    base64, userinfo: none of it reaches the log or the reported error."""
    echo = Recorder(status=500, echo_path=True)
    token = 'T0ABC123DEF/B0XYZ987654'
    url = f'http://127.0.0.1:{echo.server.server_address[1]}/services/{token}/{SECRET}?key={SECRET}'
    smtp = EchoingSmtp()
    try:
        with caplog.at_level(logging.WARNING, logger='diskguard.alerts'):
            hook, mail = deliver(
                [Webhook(url), Email(['a@example.com'], SmtpSettings('127.0.0.1', smtp.port, 'none', None, 'ops', PASSWORD))],
                ALERT,
                attempts=1,
            )  # fmt: skip
    finally:
        echo.close()
        smtp.close()
    assert len(echo.bodies) == 1 and not hook.ok and not mail.ok
    auth_plain = base64.b64encode(f'\0ops\0{PASSWORD}'.encode()).decode()
    for text in (caplog.text, hook.error or '', mail.error or ''):
        for secret in (SECRET, PASSWORD, auth_plain, 'T0ABC123DEF', 'B0XYZ987654'):
            assert secret not in text, (secret, text)
    assert 'HTTP Error 500' in (hook.error or '') and '535' in (mail.error or '')
    assert redact(f'GET https://bot:{PASSWORD}@hooks.example.com/x?key={SECRET}&v=1') == (
        'GET https://<hidden>@hooks.example.com/x?key=<hidden>&v=<hidden>'
    )
    assert redact(f'AUTH PLAIN {auth_plain}') == 'AUTH PLAIN <hidden>'


def test_webhook_url_from_a_file_or_the_environment_and_a_warning_on_the_command_line(
    tmp_path: Path, http: Recorder
) -> None:
    """Issue 17.5: ``ps`` shows argv to every user; a URL with a key there gets a warning, and it can
    come from a file or the environment instead."""
    url_file = tmp_path / 'webhook-url'
    url_file.write_text(http.url + '\n')
    url_file.chmod(0o600)  # a secret: no warning
    assert webhook_url(None, str(url_file), {}) == (http.url, None)
    assert webhook_url(None, None, {'DISKGUARD_WEBHOOK_URL': http.url}) == (http.url, None)
    assert webhook_url('https://hooks.example.com/plain', None, {}) == (
        'https://hooks.example.com/plain',
        None,
    )
    url, warning = webhook_url(http.url, None, {})
    assert url == http.url and warning is not None and '--webhook-file' in warning and SECRET not in warning
    warn = ['check', str(tmp_path), '-w', '0.001%', '-c', '99.99%', '--proc-root', '/proc']
    argv = run(*warn, '--webhook', http.url)
    assert argv.returncode == 1 and 'diskguard: warning: --webhook: the URL holds a token' in argv.stderr
    assert SECRET not in argv.stderr + argv.stdout
    quiet = run(*warn, '--webhook-file', str(url_file))
    assert quiet.returncode == 1 and quiet.stderr == ''
    env = subprocess.run(
        [sys.executable, '-m', 'diskguard', *warn],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, 'DISKGUARD_WEBHOOK_URL': http.url},
    )  # fmt: skip
    assert env.returncode == 1 and env.stderr == ''
    assert len(http.bodies) == 3


def test_delivery_is_bounded_in_total_time() -> None:
    """Issue 17.6: a webhook that accepts and never answers costs at most the total time given."""
    silent = socket.socket()
    silent.bind(('127.0.0.1', 0))
    silent.listen()
    try:
        started = time.monotonic()
        (outcome,) = deliver(
            [Webhook(f'http://127.0.0.1:{silent.getsockname()[1]}/x')], ALERT, attempts=3, total=1.5
        )
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert not outcome.ok and 'timed out' in (outcome.error or '')
    assert elapsed < 5, elapsed


def test_a_servers_reply_cannot_put_terminal_escapes_in_the_error() -> None:
    """The error we print, log and put in --json carries text the server chose (an HTTP reason
    phrase): its control characters are escaped like a name's, so it cannot retitle or clear the
    admin's terminal or forge a line."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen()

    def answer() -> None:
        for _ in range(2):
            client, _ = server.accept()
            with client:
                client.recv(65536)
                client.sendall(b'HTTP/1.0 500 \x1b]0;pwned\x07\x1b[2J\rFORGED\r\nContent-Length: 0\r\n\r\n')

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        (outcome,) = deliver(
            [Webhook(f'http://127.0.0.1:{server.getsockname()[1]}/x')],
            ALERT,
            attempts=2,
            sleep=lambda _: None,
        )
    finally:
        thread.join(timeout=10)
        server.close()
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.isprintable(), outcome.error
    assert '\\x1b]0;pwned\\x07' in outcome.error


@pytest.mark.parametrize('code', [301, 302, 303, 307, 308])
def test_a_redirected_webhook_is_not_delivered_and_the_error_says_where_it_points(
    http: Recorder, code: int
) -> None:
    """Only a 2xx answer to the POST itself delivers an alert: a redirect is not followed (urllib
    used to turn a POST answered 301/302/303 into a GET of the Location, whose 200 counted as sent),
    and the error names the status and the Location, its query hidden."""
    http.status = code
    base = http.url.split('/send')[0]
    http.location = f'{base}/landing?token=other-7c1d9e'
    (outcome,) = deliver([Webhook(http.url)], ALERT, attempts=2, sleep=lambda _: None)
    assert not outcome.ok, outcome
    assert http.gets == [], 'the redirect target saw no request'
    assert http.answers == [code, code], 'each try is one POST to the URL given, and no other'
    assert outcome.error is not None, outcome
    assert f'HTTP {code}: redirect not followed, to {base}/landing?token=<hidden> (' in outcome.error
    assert 'other-7c1d9e' not in outcome.error and SECRET not in outcome.error


def test_a_redirect_location_is_escaped_and_redacted_in_the_error(http: Recorder) -> None:
    """The Location is the server's text: a relative one is shown resolved, its controls escaped,
    its query hidden, and its length bounded."""
    http.status = 302
    http.location = '/moved/\x1b[2J?token=other-7c1d9e'
    (outcome,) = deliver([Webhook(http.url)], ALERT, attempts=1, sleep=lambda _: None)
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.isprintable(), outcome.error
    assert '127.0.0.1:' in outcome.error and '/moved/\\x1b[2J?token=<hidden> (' in outcome.error
    assert 'other-7c1d9e' not in outcome.error and http.gets == []
    http.location = '/ab' * 5_000
    (long,) = deliver([Webhook(http.url)], ALERT, attempts=1, sleep=lambda _: None)
    assert (
        long.error is not None and len(long.error) < 600 and '/ab/ab' in long.error and '... (' in long.error
    )
    assert http.gets == []


def test_names_are_data_in_webhook_and_email_bodies(tmp_path: Path, http: Recorder) -> None:
    """Issue 17.2/17.3: a directory name with bytes that are not UTF-8, a newline and an escape reaches
    both channels, escaped: valid UTF-8 JSON without lone surrogates, no forged mail line or header."""
    odd = os.fsencode(tmp_path) + b'/\xff\xfe\nFORGED: line\x1b[31m'
    os.mkdir(odd)
    url_file = tmp_path / 'url'
    url_file.write_text(http.url)
    box = Mailbox()
    try:
        done = subprocess.run(
            [sys.executable, '-m', 'diskguard', 'check', odd, '-w', '0.001%', '-c', '99.99%', '--json',
             '--webhook-file', str(url_file), '--email', 'ops@example.com', '--smtp-host', '127.0.0.1',
             '--smtp-port', str(box.port), '--smtp-security', 'none'],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        box.close()
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert [a['ok'] for a in report['alerts']] == [True, True], report['alerts']
    (raw,) = http.raw
    raw.decode('utf-8')  # strict
    assert b'\\udc' not in raw and b'\\\\xff\\\\xfe\\\\x0aFORGED: line\\\\x1b[31m' in raw
    ((_, msg),) = box.messages
    body = msg.get_content()
    assert not any(line.startswith('FORGED') for line in body.splitlines()), body
    assert '\\xff\\xfe\\x0aFORGED: line\\x1b[31m' in body and '\x1b' not in body
    assert '\n' not in msg['Subject']


def test_email_has_date_message_id_and_a_sender_named_after_the_host() -> None:
    """Issue 20.7: the headers a mail system expects, and the host in the sender as in the subject."""
    box = Mailbox()
    try:
        alert = Alert.about('WARNING', ['WARNING (was OK): /data 90.0% used'], subject='/data (was OK)')
        (outcome,) = deliver([Email(['a@example.com'], SmtpSettings('127.0.0.1', box.port, 'none'))], alert)
    finally:
        box.close()
    assert outcome.ok
    ((_, msg),) = box.messages
    host = host_name()
    assert host != 'localhost' and msg['From'] == f'diskguard@{host}'
    assert msg['Subject'] == f'[diskguard] WARNING on {host}: /data (was OK)'
    assert msg['Date'] and msg['Message-ID'].endswith(f'@{host}>')


def test_outbox_keeps_what_a_channel_did_not_take_with_backoff() -> None:
    """Issue 20.1: a failed try moves the next one back (doubling); success removes it; bounded."""
    hook = Webhook('http://127.0.0.1:1/x')
    box = Outbox([hook], retry=60.0, max_retry=300.0, limit=3)
    first = Alert.about('WARNING', ['a'])
    box.add(first, 1000.0)
    (item,) = box.due(1000.0)
    box.record(item, 'refused', 1000.0)
    assert box.due(1059.0) == [] and box.due(1060.0) == [item]
    box.record(item, 'refused', 1060.0)
    assert item.attempts == 2 and item.next_attempt == 1180.0
    for _ in range(3):
        box.record(item, 'refused', 2000.0)
    assert item.next_attempt == 2300.0  # capped at max_retry
    for n in range(4):
        box.add(Alert.about('CRITICAL', [str(n)]), 3000.0)
    assert [p.alert.text for p in box.pending()] == ['1', '2', '3']  # the oldest dropped
    restored = Outbox([hook])
    restored.load(json.loads(json.dumps(box.to_json())))
    assert [p.to_json() for p in restored.pending()] == box.to_json()
    due = box.due(4000.0)
    assert [p.alert.text for p in due] == ['1', '2', '3']  # in order; a channel waits as one
    box.record(due[0], None, 4000.0)
    assert [p.alert.text for p in box.pending()] == ['2', '3']


@pytest.mark.parametrize('kind', ['fifo', '/dev/zero', 'directory'])
@pytest.mark.parametrize('option', ['--webhook-file', '--smtp-login-file', '--config'])
def test_a_setting_file_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, option: str, kind: str
) -> None:
    """A FIFO given as a setting file used to block ``check`` forever (no writer ever comes), and
    ``--config /dev/zero`` read until memory ran out: each is now one UNKNOWN line naming it."""
    target = {'fifo': str(tmp_path / 'fifo'), '/dev/zero': '/dev/zero', 'directory': str(tmp_path)}[kind]
    if kind == 'fifo':
        os.mkfifo(target)
    extra = ['--email', 'ops@example.com'] if option == '--smtp-login-file' else []
    done = run('check', str(tmp_path), option, target, *extra, '--proc-root', '/proc', timeout=60)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith(f'DISK UNKNOWN - {option}={target!r}: not a regular file'), done.stdout


def test_outbox_survives_a_long_outage_a_clock_set_back_and_a_damaged_state_file() -> None:
    """The backoff doubled a float that overflowed after ~1000 failed tries (six weeks at an hour
    apart): the sender thread died at every try. A next try further away than the longest backoff
    (a clock set back, NaN in the state file) held the channel's alerts for as long. A state file
    could make a channel hold any number of pending alerts."""
    hook = Webhook('http://127.0.0.1:1/x')
    box = Outbox([hook], retry=60.0, max_retry=3600.0, limit=3)
    box.add(Alert.about('WARNING', ['a']), 1000.0)
    (item,) = box.due(1000.0)
    item.attempts = 1100
    box.record(item, 'refused', 1000.0)
    assert item.attempts == 1101 and item.next_attempt == 1000.0 + 3600.0
    for stuck in (1000.0 + 10 * 365 * 86400, math.nan, math.inf):
        item.next_attempt = stuck
        assert box.due(1000.0) == [item], stuck
    item.next_attempt = 1000.0 + 3000.0  # within the longest backoff: it waits
    assert box.due(1000.0) == []
    many = [Pending(hook.name, Alert.about('WARNING', [str(n)]), 1, 0.0).to_json() for n in range(1000)]
    restored = Outbox([hook], limit=3)
    restored.load(many)
    assert [p.alert.text for p in restored.pending()] == ['997', '998', '999']  # the newest kept


def test_a_secret_file_others_can_read_or_own_gets_a_warning(tmp_path: Path, http: Recorder) -> None:
    """The webhook URL and the SMTP login hold secrets: a file other users can read gives them the
    key, one they own or can write sends the alerts where they say. Each gets a warning naming the
    option and what to do; a file only its owner (root or this user) can read gets none."""
    url_file, login = tmp_path / 'url', tmp_path / 'login'
    url_file.write_text(http.url)
    login.write_text(f'ops\n{PASSWORD}\n')
    args = ['check', str(tmp_path), '-w', '99%', '-c', '99.5%', '--proc-root', '/proc']
    files = ['--webhook-file', str(url_file), '--smtp-login-file', str(login), '--email', 'ops@example.com']
    for mode in (0o644, 0o660, 0o604):
        url_file.chmod(mode)
        login.chmod(mode)
        done = run(*args, *files)
        assert done.returncode == 0, done.stdout + done.stderr
        for option, path in (('--webhook-file', url_file), ('--smtp-login-file', login)):
            assert f'diskguard: warning: {option}={str(path)!r} holds a secret' in done.stderr, done.stderr
        assert f'mode {mode:04o}' in done.stderr and 'chmod 600' in done.stderr
        assert PASSWORD not in done.stderr and SECRET not in done.stderr
    url_file.chmod(0o600)
    login.chmod(0o600)
    assert run(*args, *files).stderr == ''
    os.chown(url_file, 65534, 65534)  # another user's file
    assert 'owned by uid 65534' in run(*args, *files).stderr


def test_a_secret_with_runs_of_whitespace_is_redacted() -> None:
    """The error's whitespace used to be collapsed before redaction: a password with two spaces or
    a tab no longer matched and reached the log."""

    class Echoing(Channel):
        name = 'echo'
        secrets = secret_forms('correct  horse\tbattery')

        def send(self, alert: Alert, timeout: float = 10.0) -> None:
            raise OSError('535 rejected password correct  horse\tbattery')

    (outcome,) = deliver([Echoing()], ALERT, attempts=1)
    assert not outcome.ok and outcome.error is not None
    assert 'horse' not in outcome.error and '<hidden>' in outcome.error, outcome.error
