"""Alert channels: a webhook (generic JSON, or WeCom / Slack robot payloads) and e-mail over SMTP.

Delivery is bounded (a few attempts with exponential backoff, each with a timeout, all within a total
time) and never raises: every outcome comes back as a :class:`Delivery` (channel, ok, error) for the
caller to report, and a failing channel never stops the monitor. An alert counts as sent only when a
channel took it: :mod:`diskguard.ops.outbox` keeps what a channel has not taken and retries it.

Webhook URLs and SMTP logins carry secrets: channels are named by kind and host only, and every
error we log or report goes through :func:`diskguard.ops.redact.redact`. Names in alert texts are data:
:func:`printable` escapes what could forge a line or a header, or fail to encode.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import smtplib
import socket
import ssl
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from . import escape
from .redact import HIDDEN, redact, redact_url, secret_forms, token_like, url_has_token

log = logging.getLogger('diskguard.alerts')

#: Seconds one delivery attempt may take.
TIMEOUT = 10.0
#: Seconds one delivery of an alert may take in all, every channel and attempt included.
TOTAL_TIME = 30.0
WEBHOOK_FORMATS = ('generic', 'wecom', 'slack')
SMTP_SECURITY = ('starttls', 'tls', 'none')
#: Where a webhook URL may come from besides the command line (which every user sees in ``ps``).
WEBHOOK_ENV = 'DISKGUARD_WEBHOOK_URL'
#: Bytes read from a file holding a setting (a webhook URL, an SMTP login).
SETTING_FILE_LIMIT = 64 * 1024


def read_setting_file(
    path: str, option: str, limit: int = SETTING_FILE_LIMIT, *, secret: bool = False
) -> bytes:
    """At most ``limit`` bytes of the regular file ``path`` (the file given to ``option``). Anything
    else is refused naming the option: a FIFO would block the monitor forever, ``/dev/zero`` never
    ends, a directory has no text. A ``secret`` file that other users can read (the key is theirs)
    or write (the alerts go where they say), or that another user owns, gets a warning on stderr."""
    try:
        # O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for one.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise ValueError(f'{option}={path!r}: cannot read it ({err.strerror})') from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError(f'{option}={path!r}: not a regular file')
    if secret and (info.st_mode & 0o077 or info.st_uid not in (0, os.geteuid())):
        print(
            f'diskguard: warning: {option}={path!r} holds a secret but is owned by uid {info.st_uid} '
            f'with mode {stat.S_IMODE(info.st_mode):04o}: other users may read or change it '
            f'(chown it to this user and chmod 600 it)',
            file=sys.stderr,
        )
    with os.fdopen(fd, 'rb') as f:
        try:
            return f.read(limit)
        except OSError as err:
            raise ValueError(f'{option}={path!r}: cannot read it ({err.strerror})') from None


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
        tokens = [seg for seg in parsed.path.split('/') if token_like(seg)]
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
        """POSTs the alert; it is delivered only when the POST itself is answered 2xx. A redirect is
        not followed (see :class:`_NoRedirect`): it raises ``OSError`` naming the status and where
        it points."""
        body = json.dumps(_clean(self.payload(alert))).encode()
        request = urllib.request.Request(
            self._url, data=body, method='POST', headers={'Content-Type': 'application/json'}
        )
        try:
            # Built per send, as urlopen's own: it reads the proxy settings of the environment.
            opener = urllib.request.build_opener(_NoRedirect)
            with opener.open(request, timeout=timeout) as response:
                if not 200 <= response.status < 300:
                    raise OSError(f'HTTP {response.status}')
        except urllib.error.HTTPError as err:
            with err:
                if not 300 <= err.code < 400:
                    raise
                location = err.headers.get('Location') if err.headers is not None else None
                # The URL ends at a space: redact() takes a colon or a comma after it as the URL's.
                raise OSError(
                    f'HTTP {err.code}: redirect not followed, to {self._where(location)} (an alert is '
                    'delivered only by a 2xx answer to its POST: set the webhook URL to where it points)'
                ) from None

    def _where(self, location: str | None) -> str:
        """The Location a server answered, fit for a log: resolved against the URL, its secrets
        hidden (:func:`redact_url`), escaped as a name and of bounded length."""
        if not location:
            return '(no Location)'
        try:
            shown = redact_url(urllib.parse.urljoin(self._url, location))
        except ValueError:
            shown = HIDDEN
        shown = escape.text(shown)
        return shown if len(shown) <= LOCATION_SHOWN else shown[:LOCATION_SHOWN] + '...'


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: the answer to the POST is what counts. urllib turns a POST answered 301,
    302 or 303 into a GET of the Location without the body, whose 2xx would count as a delivery no
    one received, and it would follow to any host and scheme (https to http included). 307/308 keep
    the method and the body, but are not followed either, not even to the same origin: a webhook that
    moved (most often http to https, another origin anyway) is the admin's to update, as curl does
    without -L, and an alert goes only where the admin configured it. So every 3xx comes back as an
    ``HTTPError``, and the error says where it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


#: Characters of a redirect's Location shown in an error (a header line may be 64 KiB).
LOCATION_SHOWN = 300


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
            first = (
                read_setting_file(url_file, '--webhook-file', secret=True)
                .split(b'\n', 1)[0]
                .decode('utf-8')
                .strip()
            )
        except UnicodeDecodeError:
            raise ValueError(f'--webhook-file={url_file!r}: cannot read it (not UTF-8 text)') from None
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
            lines = (
                read_setting_file(login_file, '--smtp-login-file', secret=True).decode('utf-8').splitlines()
            )
        except UnicodeDecodeError:
            raise ValueError(f'--smtp-login-file={login_file!r}: cannot read it (not UTF-8 text)') from None
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
        # Redacted before the whitespace is collapsed (a secret with two spaces must still match), then
        # made printable: the text may hold what the server chose (a reason phrase), like a name.
        return printable(' '.join(redact(f'{type(err).__name__}: {err}', channel.secrets).split()))
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
