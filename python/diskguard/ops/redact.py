"""Secrets out of every message: webhook URLs (userinfo, query strings, key-like path segments) and
SMTP logins (the password, and its base64 forms as ``AUTH PLAIN`` / ``AUTH LOGIN`` send them, which
some servers echo in their errors). Whatever diskguard logs or prints about a channel goes through
:func:`redact` first."""

from __future__ import annotations

import base64
import math
import re
import urllib.parse
from collections.abc import Iterable

HIDDEN = '<hidden>'
# A URL runs to whitespace, a quote or an angle bracket, except the HIDDEN a redaction left in it: a
# message that already holds a redacted URL (a redirect's Location) comes out of redact() unchanged,
# not as ``key=<hidden><hidden>``.
_URL = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://(?:[^\s\'"<>]|' + re.escape(HIDDEN) + ')+')
_AUTH = re.compile(r'(?i)(\bAUTH\s+(?:PLAIN|LOGIN|XOAUTH2|CRAM-MD5)\s+)\S+')


def token_like(segment: str) -> bool:
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
    path = '/'.join(HIDDEN if token_like(seg) else seg for seg in parts.path.split('/'))
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
