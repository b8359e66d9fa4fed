"""Parsers for the operations commands' values: thresholds, intervals, addresses, budgets.

Every parser raises ``ValueError`` naming the option, the value and what is allowed, so the command
line prints one line and exits, never a traceback.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .. import parse_size

#: The longest interval accepted anywhere (a year): anything longer is a typo.
MAX_SECONDS = 365 * 24 * 3600.0

_UNITS = {'': 1.0, 's': 1.0, 'm': 60.0, 'h': 3600.0, 'd': 86400.0}
_DURATION = re.compile(r'^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$', re.IGNORECASE)


@dataclass(frozen=True)
class Threshold:
    """Either a fraction of the space used (``85%``) or a floor of available bytes (``20GiB``)."""

    fraction: float | None = None
    free_bytes: int | None = None

    def __str__(self) -> str:
        if self.fraction is not None:
            return f'{self.fraction * 100:g}%'
        return f'{self.free_bytes} bytes free'


def _bad(option: str, value: object, allowed: str) -> ValueError:
    return ValueError(f'{option}={value!r}: {allowed}')


def percentage(option: str, text: str) -> float:
    """``'85%'`` or ``'85'`` as the fraction 0.85, in (0, 1]."""
    allowed = 'expected a percentage in (0, 100] such as 85%'
    number = text.strip().removesuffix('%').strip()
    try:
        value = float(number)
    except ValueError:
        raise _bad(option, text, allowed) from None
    fraction = value / 100
    # Checked after dividing: a subnormal percentage ('1E-322') would become a fraction of 0.
    if not (math.isfinite(value) and 0 < fraction and value <= 100):
        raise _bad(option, text, allowed)
    return fraction


def threshold(option: str, text: str) -> Threshold:
    """``'85%'`` (percent used, as df counts it) or ``'20GiB'`` (available bytes below which it fires)."""
    if not isinstance(text, str) or not text.strip():
        raise _bad(option, text, 'expected a percentage used such as 85% or a free-space floor such as 20GiB')
    if text.strip().endswith('%'):
        return Threshold(fraction=percentage(option, text))
    if re.fullmatch(r'[\d.\s]+', text):
        # check_disk reads a bare number as MiB free, others as percent: make the user say which.
        raise _bad(
            option, text, 'a bare number is ambiguous: write a percentage used (85%) or a size (20GiB)'
        )
    try:
        return Threshold(free_bytes=parse_size(text))
    except ValueError:
        raise _bad(
            option, text, 'expected a percentage used such as 85% or a free-space floor such as 20GiB'
        ) from None


def size(option: str, text: str, *, minimum: int = 1) -> int:
    """A byte size with its unit, such as ``'500GiB'`` or ``'4096B'``, at least one byte (``minimum=0``:
    ``'0B'`` too, a floor that is off). A bare number is refused as ambiguous, as ``-w 85`` is: bytes
    to some readers, GiB to others."""
    if isinstance(text, str) and re.fullmatch(r'\s*[\d.]+\s*', text):
        raise _bad(option, text, "a size without a unit is ambiguous: write '500GiB', or '4096B' for bytes")
    try:
        value = parse_size(text)
    except (ValueError, TypeError):
        raise _bad(option, text, "expected a size such as '500GiB', '2TiB' or '4096B'") from None
    if value < minimum:
        raise _bad(option, text, 'expected a size of at least one byte')
    return value


def duration(option: str, text: str | float, *, minimum: float = 0.1) -> float:
    """Seconds from ``'60s'``, ``'5m'``, ``'1.5h'``, ``'1d'`` or a bare number of seconds."""
    allowed = f"expected a duration such as '60s', '5m', '1h' or '1d', from {minimum:g}s to a year"
    if isinstance(text, bool):
        raise _bad(option, text, allowed)
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise _bad(option, text, allowed)
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not (math.isfinite(seconds) and minimum <= seconds <= MAX_SECONDS):
        raise _bad(option, text, allowed)
    return seconds


def count(option: str, text: str | int, *, minimum: int = 1, maximum: int = 1_000_000) -> int:
    """A whole number in ``[minimum, maximum]``."""
    allowed = f'expected a whole number from {minimum} to {maximum}'
    if isinstance(text, bool | float):
        raise _bad(option, text, allowed)
    try:
        value = int(str(text).strip())
    except ValueError:
        raise _bad(option, text, allowed) from None
    if not minimum <= value <= maximum:
        raise _bad(option, text, allowed)
    return value


def listen_address(option: str, text: str) -> tuple[str, int]:
    """``'127.0.0.1:9101'`` or ``'[::1]:9101'`` as (host, port); port 1 to 65535 (0 picks a free one)."""
    allowed = "expected HOST:PORT such as '127.0.0.1:9101' (port 0 to 65535)"
    match = re.fullmatch(r'\s*(?:\[([0-9a-fA-F:.]+)\]|([^:\s\[\]]+)):(\d{1,5})\s*', str(text))
    if not match:
        raise _bad(option, text, allowed)
    port = int(match.group(3))
    if port > 65535:
        raise _bad(option, text, allowed)
    return (match.group(1) or match.group(2), port)


def budget(option: str, text: str) -> tuple[str, int]:
    """``'/workspace/*=500GiB'`` as (glob, bytes)."""
    pattern, sep, amount = str(text).rpartition('=')
    if not sep or not pattern.strip():
        raise _bad(option, text, "expected DIR_OR_GLOB=SIZE such as '/workspace/*=500GiB'")
    return pattern.strip(), size(option, amount.strip())
