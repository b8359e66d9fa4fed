"""Alert channels against real local servers: an HTTP server that records POSTs (generic, WeCom and
Slack payloads; failures retried with backoff, the URL never logged) and an aiosmtpd SMTP server
(plain, STARTTLS and TLS with a self-signed certificate, login from a file or the environment; the
password never logged)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from diskguard.ops.alerts import Alert, Email, SmtpSettings, Webhook, deliver, smtp_login

SECRET = 'key-3f9a1c0e'
PASSWORD = 'hunter2-secret'


class Recorder:
    """A local HTTP server that records each POST and answers with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[Any] = []
        self.paths: list[str] = []
        self.status = status
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers['Content-Length'])
                recorder.bodies.append(json.loads(self.rfile.read(length)))
                recorder.paths.append(self.path)
                self.send_response(recorder.status)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
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
    assert deliver([Webhook(http.url, fmt)], ALERT) == {'webhook (' + fmt + ') to 127.0.0.1': True}
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
    assert outcome == {'webhook (generic) to 127.0.0.1': False}
    assert len(failing.bodies) == 3 and pauses == [0.5, 1.0]
    assert 'HTTP Error 500' in caplog.text and SECRET not in caplog.text


def test_an_unreachable_webhook_never_raises_nor_logs_its_url(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger='diskguard.alerts'):
        outcome = deliver(
            [Webhook(f'http://127.0.0.1:1/x?key={SECRET}')], ALERT, attempts=2, sleep=lambda _: None
        )
    assert outcome == {'webhook (generic) to 127.0.0.1': False}
    assert caplog.text.count('failed') == 2 and SECRET not in caplog.text


@pytest.mark.parametrize('url', ['ftp://x', 'not a url', '', f'file:///etc/{SECRET}'])
def test_bad_webhook_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match='expected an http') as err:
        Webhook(url)
    assert SECRET not in str(err.value)


class Mailbox:
    """An aiosmtpd server on loopback that keeps what it receives; optional TLS and login."""

    def __init__(self, tls: Any = None, starttls: Any = None, login: tuple[str, str] | None = None) -> None:
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
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(Handler(), hostname='127.0.0.1', port=self.port, **kwargs)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def test_email_plain_with_login_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    box = Mailbox(login=('ops', PASSWORD))
    try:
        user, password = smtp_login(None, {'DISKGUARD_SMTP_USER': 'ops', 'DISKGUARD_SMTP_PASSWORD': PASSWORD})
        settings = SmtpSettings('127.0.0.1', box.port, 'none', 'guard@example.com', user, password)
        assert deliver([Email(['a@example.com', 'b@example.com'], settings)], ALERT)[
            f'e-mail via 127.0.0.1:{box.port}'
        ]
    finally:
        box.close()
    ((rcpt, msg),) = box.messages
    assert rcpt == ['a@example.com', 'b@example.com'] and box.logins == ['ops']
    assert msg['Subject'] == ALERT.title and msg['From'] == 'guard@example.com'
    assert ALERT.text in msg.get_content()
    closed = SmtpSettings('127.0.0.1', 1, 'none', None, 'ops', PASSWORD)
    with caplog.at_level(logging.WARNING, logger='diskguard.alerts'):
        assert deliver([Email(['a@example.com'], closed)], ALERT, attempts=2, sleep=lambda _: None) == {
            'e-mail via 127.0.0.1:1': False
        }
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
        assert all(deliver([Email(['a@example.com'], settings)], ALERT, attempts=1).values())
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
