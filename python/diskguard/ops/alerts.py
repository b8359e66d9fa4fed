"""Alert channels: a webhook (generic JSON, or WeCom / Slack robot payloads) and e-mail over SMTP.

Delivery is bounded (a few attempts with exponential backoff, each with a timeout) and never raises:
a failing channel is logged and the monitor goes on. Webhook URLs and SMTP passwords carry secrets,
so neither ever appears in a log line or an error message: channels are named by kind and host only.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

log = logging.getLogger('diskguard.alerts')

#: Seconds one delivery attempt may take.
TIMEOUT = 10.0
WEBHOOK_FORMATS = ('generic', 'wecom', 'slack')
SMTP_SECURITY = ('starttls', 'tls', 'none')


@dataclass
class Alert:
    """What changed, in words and as data."""

    state: str
    title: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_text(self) -> str:
        return f'{self.title}\n\n{self.text}'

    @classmethod
    def about(cls, state: str, text: str, details: dict[str, Any] | None = None) -> Alert:
        """An alert titled ``[diskguard] STATE on HOST``."""
        return cls(state, f'[diskguard] {state} on {socket.gethostname()}', text, details or {})


class Channel:
    """Something an alert can be sent to. ``name`` is safe to log."""

    name = 'channel'

    def send(self, alert: Alert) -> None:
        raise NotImplementedError


def _redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, '<hidden>')
    return text


class Webhook(Channel):
    """POSTs JSON to ``url``: the generic payload, or a WeCom / Slack robot's text message."""

    def __init__(self, url: str, fmt: str = 'generic') -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ('http', 'https') or not parsed.hostname:
            # The value itself may hold a key: say what is wrong without echoing it.
            raise ValueError(
                '--webhook: expected an http:// or https:// URL (value not shown: it may hold a key)'
            )
        if fmt not in WEBHOOK_FORMATS:
            raise ValueError(f'--webhook-format={fmt!r}: expected one of {", ".join(WEBHOOK_FORMATS)}')
        self._url = url
        self.format = fmt
        self.name = f'webhook ({fmt}) to {parsed.hostname}'

    def payload(self, alert: Alert) -> dict[str, Any]:
        if self.format == 'wecom':
            return {'msgtype': 'text', 'text': {'content': alert.as_text()}}
        if self.format == 'slack':
            return {'text': alert.as_text()}
        return {
            'source': 'diskguard',
            'host': socket.gethostname(),
            'state': alert.state,
            'title': alert.title,
            'text': alert.text,
            'details': alert.details,
        }

    def send(self, alert: Alert) -> None:
        body = json.dumps(self.payload(alert)).encode()
        request = urllib.request.Request(
            self._url, data=body, method='POST', headers={'Content-Type': 'application/json'}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                if not 200 <= response.status < 300:
                    raise OSError(f'HTTP {response.status}')
        except Exception as err:  # noqa: BLE001 - any failure becomes one redacted OSError
            raise OSError(_redact(f'{type(err).__name__}: {err}', self._url)) from None


@dataclass
class SmtpSettings:
    """Where and how to send mail. The login comes from the environment or a file, never argv."""

    host: str = 'localhost'
    port: int | None = None
    security: str = 'starttls'
    sender: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def effective_port(self) -> int:
        return self.port or {'tls': 465, 'starttls': 587, 'none': 25}[self.security]


def smtp_login(
    login_file: str | None, environ: dict[str, str] | None = None
) -> tuple[str | None, str | None]:
    """(user, password) from ``login_file`` (first line the user, second the password) or from
    ``DISKGUARD_SMTP_USER`` / ``DISKGUARD_SMTP_PASSWORD``."""
    env = os.environ if environ is None else environ
    if login_file is not None:
        try:
            with open(login_file, encoding='utf-8') as f:
                lines = f.read().splitlines()
        except OSError as err:
            raise ValueError(f'--smtp-login-file={login_file!r}: cannot read it ({err.strerror})') from None
        if len(lines) < 2 or not lines[0].strip():
            raise ValueError(
                f'--smtp-login-file={login_file!r}: expected the user on the first line and the password '
                'on the second'
            )
        return lines[0].strip(), lines[1]
    user, password = env.get('DISKGUARD_SMTP_USER'), env.get('DISKGUARD_SMTP_PASSWORD')
    if bool(user) != bool(password):
        raise ValueError('set both DISKGUARD_SMTP_USER and DISKGUARD_SMTP_PASSWORD, or neither')
    return user or None, password or None


class Email(Channel):
    """Sends the alert as a plain-text message to ``to`` (a list of addresses)."""

    def __init__(self, to: list[str], settings: SmtpSettings) -> None:
        bad = [a for a in to if '@' not in a or any(c in a for c in '\r\n ')]
        if not to or bad:
            raise ValueError(f'--email={",".join(to)!r}: expected e-mail addresses such as ops@example.com')
        if settings.security not in SMTP_SECURITY:
            raise ValueError(
                f'--smtp-security={settings.security!r}: expected one of {", ".join(SMTP_SECURITY)}'
            )
        self.to = to
        self.settings = settings
        self.name = f'e-mail via {settings.host}:{settings.effective_port()}'

    def message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        msg['Subject'] = alert.title
        msg['From'] = self.settings.sender or f'diskguard@{socket.getfqdn()}'
        msg['To'] = ', '.join(self.to)
        msg.set_content(alert.text + '\n')
        return msg

    def send(self, alert: Alert) -> None:
        s = self.settings
        try:
            smtp: smtplib.SMTP
            if s.security == 'tls':
                smtp = smtplib.SMTP_SSL(
                    s.host, s.effective_port(), timeout=TIMEOUT, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.effective_port(), timeout=TIMEOUT)
            with smtp:
                if s.security == 'starttls':
                    smtp.starttls(context=ssl.create_default_context())
                if s.user is not None and s.password is not None:
                    smtp.login(s.user, s.password)
                smtp.send_message(self.message(alert))
        except Exception as err:  # noqa: BLE001 - any failure becomes one redacted OSError
            raise OSError(_redact(f'{type(err).__name__}: {err}', s.password)) from None


def deliver(
    channels: list[Channel],
    alert: Alert,
    *,
    attempts: int = 3,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, bool]:
    """Sends ``alert`` on every channel, each tried up to ``attempts`` times with backoff doubling
    from ``backoff`` seconds. Never raises; returns whether each channel (by name) succeeded."""
    outcome: dict[str, bool] = {}
    for channel in channels:
        outcome[channel.name] = False
        for attempt in range(attempts):
            try:
                channel.send(alert)
            except Exception as err:  # noqa: BLE001 - a channel must never stop the monitor
                log.warning(
                    'alert via %s failed (attempt %d of %d): %s', channel.name, attempt + 1, attempts, err
                )
                if attempt + 1 < attempts:
                    sleep(backoff * 2**attempt)
                continue
            outcome[channel.name] = True
            break
    return outcome
