"""Alert channels: a webhook (generic JSON, or WeCom / Slack robot payloads) and e-mail over SMTP.

Delivery is bounded (a few attempts with exponential backoff, each with a timeout, all within a total
time) and never raises: every outcome comes back as a :class:`Delivery` (channel, ok, error) for the
caller to report, and a failing channel never stops the monitor. An alert counts as sent only when a
channel took it: :class:`Outbox` keeps what a channel has not taken and retries it with backoff on
later ticks (``watch`` keeps it in its state file), :class:`Sender` sends off the check loop.

Webhook URLs and SMTP logins carry secrets: channels are named by kind and host only, and every
message we log or print goes through :func:`redact` (query strings, path tokens, userinfo, the
secrets themselves and their base64 forms as SMTP AUTH sends them). Names in alert texts are data:
:func:`printable` escapes what could forge a line or a header, or fail to encode.
"""

from __future__ import annotations

import base64
import collections
import functools
import json
import logging
import math
import os
import re
import smtplib
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

log = logging.getLogger('diskguard.alerts')

#: Seconds one delivery attempt may take.
TIMEOUT = 10.0
#: Seconds one delivery of an alert may take in all, every channel and attempt included.
TOTAL_TIME = 30.0
WEBHOOK_FORMATS = ('generic', 'wecom', 'slack')
SMTP_SECURITY = ('starttls', 'tls', 'none')
#: Where a webhook URL may come from besides the command line (which every user sees in ``ps``).
WEBHOOK_ENV = 'DISKGUARD_WEBHOOK_URL'


@functools.cache
def host_name() -> str:
    """This machine's name, as the alert titles and the e-mail sender give it: the fully qualified
    name when the resolver knows one, else the kernel's host name (never ``localhost``)."""
    fqdn = socket.getfqdn()
    if fqdn and '.' in fqdn and not fqdn.startswith('localhost'):
        return fqdn
    return socket.gethostname()


# Surrogates (bytes that are not UTF-8, from os.fsdecode), C0/C1 controls and DEL: what could fail to
# encode, forge a line or a header, or drive a terminal.
_UNPRINTABLE = re.compile('[\x00-\x1f\x7f-\x9f\udc80-\udcff]')


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f'\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}'


def printable(text: str) -> str:
    """``text`` on one line of valid UTF-8: controls and undecodable bytes as ``\\xNN`` (a name's
    byte ``\\xff`` shows as ``\\xff``, a newline in a name as ``\\x0a``)."""
    return _UNPRINTABLE.sub(_escape_char, text)


_SURROGATE = re.compile('[\udc80-\udcff]')


def _clean(value: Any) -> Any:
    """Every string in a JSON-able value with its undecodable bytes as ``\\xNN``, so the JSON stays
    valid UTF-8 (no lone surrogates); JSON escapes the controls itself."""
    if isinstance(value, str):
        return _SURROGATE.sub(_escape_char, value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


@dataclass
class Alert:
    """What changed, in words and as data. Each line of ``text`` says one item's state."""

    state: str
    title: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_text(self) -> str:
        return f'{self.title}\n\n{self.text}'

    @classmethod
    def about(
        cls, state: str, lines: Iterable[str], details: dict[str, Any] | None = None, subject: str = ''
    ) -> Alert:
        """An alert titled ``[diskguard] STATE on HOST: subject``; every line and the subject are
        made :func:`printable` (a name cannot add a line, nor a header)."""
        title = f'[diskguard] {state} on {host_name()}' + (f': {subject}' if subject else '')
        text = '\n'.join(printable(line) for line in lines)
        return cls(state, printable(title), text, _clean(details or {}))

    def to_json(self) -> dict[str, Any]:
        return {'state': self.state, 'title': self.title, 'text': self.text, 'details': self.details}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        return cls(str(data['state']), str(data['title']), str(data['text']), dict(data.get('details', {})))


def summarize(items: list[str], most: int = 3) -> str:
    """``a, b, c and 2 more``: a subject line that stays short."""
    shown = ', '.join(items[:most])
    return shown + (f' and {len(items) - most} more' if len(items) > most else '')


# -- secrets ------------------------------------------------------------------------------------------

_URL = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://[^\s\'"<>]+')
_AUTH = re.compile(r'(?i)(\bAUTH\s+(?:PLAIN|LOGIN|XOAUTH2|CRAM-MD5)\s+)\S+')
HIDDEN = '<hidden>'


def _token_like(segment: str) -> bool:
    """A path segment that looks like a key: long, or mixing letters and digits (Slack's
    ``/services/T0/B0/XXXX``, a bot key in the path)."""
    letters, digits = any(c.isalpha() for c in segment), any(c.isdigit() for c in segment)
    return len(segment) >= 24 or (len(segment) >= 8 and letters and digits)


def redact_url(url: str) -> str:
    """``url`` without its secrets: userinfo, the query string's values, token-like path segments and
    the fragment become ``<hidden>``; scheme, host, port and the plain path stay for diagnosis."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ''
        port = parts.port
    except ValueError:
        return HIDDEN
    netloc = (f'{HIDDEN}@' if '@' in parts.netloc else '') + (f'[{host}]' if ':' in host else host)
    netloc += f':{port}' if port else ''
    path = '/'.join(HIDDEN if _token_like(seg) else seg for seg in parts.path.split('/'))
    query = '&'.join(
        f'{k}={HIDDEN}' if v or '=' in pair else HIDDEN
        for pair in parts.query.split('&')
        if pair
        for k, _, v in [pair.partition('=')]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, query, HIDDEN if parts.fragment else ''))


def url_has_token(url: str) -> bool:
    """Whether ``url`` carries something secret (userinfo, a query string, a token in the path)."""
    return redact_url(url) != url


def _base64_forms(secret: bytes) -> set[str]:
    """The base64 text that certainly encodes ``secret`` wherever it sits in a longer encoded string
    (three alignments), as SMTP AUTH PLAIN / LOGIN send it."""
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b'\0' * offset + secret).decode()
        start, end = math.ceil(8 * offset / 6), (8 * (offset + len(secret))) // 6
        if end - start >= 6:
            forms.add(encoded[start:end])
    return forms


def secret_forms(*secrets: str | None) -> list[str]:
    """Every form of ``secrets`` a message might echo: as given, URL-quoted and base64-encoded."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        forms |= {secret, urllib.parse.quote(secret, safe=''), urllib.parse.quote(secret)}
        forms |= _base64_forms(secret.encode())
    # Longest first, so a secret is never half-replaced by a shorter one inside it.
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` fit for a log: URLs without their secrets, SMTP AUTH arguments hidden, and every
    form of ``secrets`` (see :func:`secret_forms`) replaced by ``<hidden>``."""
    for secret in secrets:
        text = text.replace(secret, HIDDEN)
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    return _AUTH.sub(lambda m: m.group(1) + HIDDEN, text)


# -- channels -----------------------------------------------------------------------------------------


class Channel:
    """Something an alert can be sent to. ``name`` is safe to log; ``secrets`` are never logged."""

    name = 'channel'
    secrets: Sequence[str] = ()

    def send(self, alert: Alert, timeout: float = TIMEOUT) -> None:
        raise NotImplementedError


class Webhook(Channel):
    """POSTs JSON to ``url``: the generic payload, or a WeCom / Slack robot's text message."""

    def __init__(self, url: str, fmt: str = 'generic') -> None:
        url = url.strip()
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
        query_values = [v for _, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)]
        tokens = [seg for seg in parsed.path.split('/') if _token_like(seg)]
        self.secrets = secret_forms(
            url, parsed.path if tokens else None, parsed.query, parsed.username, parsed.password,
            *query_values, *tokens,
        )  # fmt: skip

    def payload(self, alert: Alert) -> dict[str, Any]:
        if self.format == 'wecom':
            return {'msgtype': 'text', 'text': {'content': alert.as_text()}}
        if self.format == 'slack':
            return {'text': alert.as_text()}
        return {
            'source': 'diskguard',
            'host': host_name(),
            'state': alert.state,
            'title': alert.title,
            'text': alert.text,
            'details': alert.details,
        }

    def send(self, alert: Alert, timeout: float = TIMEOUT) -> None:
        body = json.dumps(_clean(self.payload(alert))).encode()
        request = urllib.request.Request(
            self._url, data=body, method='POST', headers={'Content-Type': 'application/json'}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if not 200 <= response.status < 300:
                raise OSError(f'HTTP {response.status}')


def webhook_url(
    url: str | None, url_file: str | None, environ: dict[str, str] | None = None
) -> tuple[str | None, str | None]:
    """The webhook URL and where it came from: ``--webhook`` (a warning is due when it holds a token:
    every user sees the command line), else the first line of ``--webhook-file``, else
    ``$DISKGUARD_WEBHOOK_URL``. Returns ``(url, warning)``."""
    env = os.environ if environ is None else environ
    if url:
        if url_has_token(url):
            return url, (
                '--webhook: the URL holds a token (query string, user or key in the path) and the '
                'command line is visible to every user (ps); pass it with --webhook-file FILE or '
                f'${WEBHOOK_ENV} instead'
            )
        return url, None
    if url_file:
        try:
            with open(url_file, encoding='utf-8') as f:
                first = f.readline(64 * 1024).strip()
        except (OSError, UnicodeDecodeError) as err:
            why = err.strerror if isinstance(err, OSError) else 'not UTF-8 text'
            raise ValueError(f'--webhook-file={url_file!r}: cannot read it ({why})') from None
        if not first:
            raise ValueError(f'--webhook-file={url_file!r}: expected the URL on the first line')
        return first, None
    return (env.get(WEBHOOK_ENV) or '').strip() or None, None


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
                lines = f.read(64 * 1024).splitlines()
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
        user, password = settings.user, settings.password
        # AUTH PLAIN sends base64('\0user\0password'): an echo of it must not reach the log either.
        plain = f'\0{user}\0{password}' if user and password else None
        self.secrets = secret_forms(password, plain, f'{user}\0{user}\0{password}' if plain else None)

    def message(self, alert: Alert) -> EmailMessage:
        host = host_name()
        msg = EmailMessage()
        msg['Subject'] = printable(alert.title)
        msg['From'] = self.settings.sender or f'diskguard@{host}'
        msg['To'] = ', '.join(self.to)
        msg['Date'] = formatdate(localtime=True)
        msg['Message-ID'] = make_msgid('diskguard', domain=host)
        msg.set_content(printable_lines(alert.text) + '\n')
        return msg

    def send(self, alert: Alert, timeout: float = TIMEOUT) -> None:
        s = self.settings
        smtp: smtplib.SMTP
        if s.security == 'tls':
            smtp = smtplib.SMTP_SSL(
                s.host, s.effective_port(), timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(s.host, s.effective_port(), timeout=timeout)
        with smtp:
            if s.security == 'starttls':
                smtp.starttls(context=ssl.create_default_context())
            if s.user is not None and s.password is not None:
                smtp.login(s.user, s.password)
            smtp.send_message(self.message(alert))


def printable_lines(text: str) -> str:
    """Each line of ``text`` made :func:`printable`, the line breaks kept."""
    return '\n'.join(printable(line) for line in text.split('\n'))


# -- delivery -----------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One channel's outcome for one alert; ``error`` is redacted, fit to print and log."""

    channel: str
    ok: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {'channel': self.channel, 'ok': self.ok, 'error': self.error}


def send_once(channel: Channel, alert: Alert, timeout: float) -> str | None:
    """One attempt; returns the redacted error, or None when the channel took the alert."""
    try:
        channel.send(alert, timeout)
    except Exception as err:  # noqa: BLE001 - a channel must never stop the monitor
        return redact(' '.join(f'{type(err).__name__}: {err}'.split()), channel.secrets)
    return None


def deliver_one(
    channel: Channel,
    alert: Alert,
    *,
    attempts: int = 3,
    backoff: float = 1.0,
    total: float = TOTAL_TIME,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """Sends ``alert`` on ``channel``: up to ``attempts`` tries, backoff doubling from ``backoff``
    seconds, all within ``total`` seconds (each try's timeout is what is left). Never raises."""
    deadline = clock() + total
    error = 'no time left to try'
    for attempt in range(attempts):
        left = deadline - clock()
        if left <= 0:
            break
        failed = send_once(channel, alert, min(TIMEOUT, left))
        if failed is None:
            return Delivery(channel.name, True)
        error = failed
        log.warning('alert via %s failed (attempt %d of %d): %s', channel.name, attempt + 1, attempts, error)
        pause = backoff * 2**attempt
        if attempt + 1 < attempts and deadline - clock() > pause:
            sleep(pause)
        elif attempt + 1 < attempts:
            break
    return Delivery(channel.name, False, error)


def deliver(
    channels: list[Channel],
    alert: Alert,
    *,
    attempts: int = 3,
    backoff: float = 1.0,
    total: float = TOTAL_TIME,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """Sends ``alert`` on every channel, each within its share of ``total`` seconds (see
    :func:`deliver_one`). Never raises; returns each channel's :class:`Delivery`."""
    share = total / max(1, len(channels))
    return [
        deliver_one(c, alert, attempts=attempts, backoff=backoff, total=share, sleep=sleep) for c in channels
    ]


@dataclass
class Pending:
    """An alert a channel has not taken yet."""

    channel: str
    alert: Alert
    attempts: int = 0
    next_attempt: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            'channel': self.channel,
            'alert': self.alert.to_json(),
            'attempts': self.attempts,
            'next_attempt': self.next_attempt,
            'error': self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pending:
        error = data.get('error')
        return cls(
            str(data['channel']),
            Alert.from_json(data['alert']),
            int(data['attempts']),
            float(data['next_attempt']),
            None if error is None else str(error),
        )


class Outbox:
    """Alerts not yet taken, per channel, in order; each failed try moves the next one back
    (``retry`` seconds doubling up to ``max_retry``). At most ``limit`` alerts wait per channel: the
    oldest go first (the newest says the current state). Thread-safe."""

    def __init__(
        self, channels: list[Channel], *, retry: float = 60.0, max_retry: float = 3600.0, limit: int = 20
    ) -> None:
        self.channels = {c.name: c for c in channels}
        self.retry, self.max_retry, self.limit = retry, max_retry, limit
        self._items: list[Pending] = []
        self._lock = threading.Lock()

    def add(self, alert: Alert, now: float) -> None:
        with self._lock:
            for name in self.channels:
                self._items.append(Pending(name, alert, next_attempt=now))
                mine = [p for p in self._items if p.channel == name]
                for dropped in mine[: max(0, len(mine) - self.limit)]:
                    log.warning('alert via %s dropped undelivered (more than %d waiting)', name, self.limit)
                    self._items.remove(dropped)

    def pending(self) -> list[Pending]:
        with self._lock:
            return list(self._items)

    def due(self, now: float) -> list[Pending]:
        """What may be tried now, oldest first: per channel, its alerts in order, from the oldest
        once its time has come (a channel is never asked to take a newer alert before an older)."""
        with self._lock:
            waiting: set[str] = set()
            due = []
            for p in self._items:
                if p.channel in waiting:
                    continue
                if p.next_attempt <= now:
                    due.append(p)
                else:
                    waiting.add(p.channel)
            return due

    def record(self, item: Pending, error: str | None, now: float) -> None:
        with self._lock:
            if item not in self._items:
                return
            if error is None:
                self._items.remove(item)
                return
            item.attempts += 1
            item.error = error
            item.next_attempt = now + min(self.max_retry, self.retry * 2 ** (item.attempts - 1))

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p.to_json() for p in self._items]

    def load(self, items: list[Any]) -> None:
        """Pending alerts from a state file; those for channels no longer configured are dropped."""
        loaded = [Pending.from_json(x) for x in items]
        with self._lock:
            for p in loaded:
                if p.channel in self.channels:
                    self._items.append(p)
                else:
                    log.warning('dropping an alert pending for %s: that channel is no longer set', p.channel)


class Sender:
    """Sends an :class:`Outbox`'s due alerts on a background thread, one batch at a time, each batch
    within ``total`` seconds: a channel that hangs never holds up the checks."""

    def __init__(
        self, outbox: Outbox, *, total: float = TOTAL_TIME, clock: Callable[[], float] = time.time
    ) -> None:
        self.outbox, self.total, self.clock = outbox, total, clock
        self._thread: threading.Thread | None = None
        #: The latest outcomes (bounded: the daemon runs for months).
        self.deliveries: collections.deque[Delivery] = collections.deque(maxlen=100)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def dispatch(self, now: float) -> bool:
        """Starts sending what is due, unless a batch is still on its way; returns whether it did."""
        if self.busy:
            return False
        batch = self.outbox.due(now)
        if not batch:
            return False
        self._thread = threading.Thread(
            target=self._send, args=(batch,), name='diskguard-alerts', daemon=True
        )
        self._thread.start()
        return True

    def _send(self, batch: list[Pending]) -> None:
        deadline = time.monotonic() + self.total
        failed: set[str] = set()
        for n, item in enumerate(batch):
            left = deadline - time.monotonic()
            if item.channel in failed or left <= 0:
                continue  # tried again on a later tick, still in order
            channel = self.outbox.channels[item.channel]
            outcome = deliver_one(channel, item.alert, attempts=2, total=left / (len(batch) - n))
            self.outbox.record(item, outcome.error if not outcome.ok else None, self.clock())
            self.deliveries.append(outcome)
            if not outcome.ok:
                failed.add(item.channel)
                log.warning('alert via %s kept to retry later: %s', channel.name, outcome.error)

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the batch on its way (at most ``timeout`` seconds); returns whether it is done."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.busy
