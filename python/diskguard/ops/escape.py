"""Names are data: one escaping rule per output format.

File and directory names on Linux are any bytes but ``/`` and NUL; another user of the machine
chooses them. Python keeps bytes that are not UTF-8 as lone surrogates (``'\\udcff'``), which cannot be
encoded as UTF-8, and a name may hold a newline, a carriage return, an ESC or a bidirectional
override. Every output goes through exactly one of these functions:

======================  ========================================================================
Output                  Rule
======================  ========================================================================
terminal text, tables,  :func:`text`: bytes that are not UTF-8 as ``\\xHH``; control characters
logs                    (C0, DEL, C1) as ``\\xHH`` (a newline is ``\\x0a``); Unicode format
                        controls that reorder or hide text (bidi overrides, zero-width) as
                        ``\\uHHHH``. Everything else, backslashes included, is shown as it is.
Nagios line             :func:`nagios_text` for the text and the long output (:func:`text`, and
                        ``|``, which starts performance data, as ``\\x7c``); :func:`nagios_label`
                        for a perfdata label (also ``=`` as ``\\x3d``, then single-quoted with
                        quotes doubled, as the plugin guidelines say).
Prometheus              :func:`prometheus_label`: the exposition format's escapes (``\\\\``,
                        ``\\"``, ``\\n``); undecodable bytes and other control characters as
                        ``\\xHH`` in the label's value.
``--json``              :func:`json_dumps`: bytes that are not UTF-8 as ``\\xHH`` (the rest is
                        JSON's own escaping), so the output is valid UTF-8 that strict parsers
                        accept (no lone surrogates).
======================  ========================================================================

A name that literally contains the four characters ``\\xff`` looks like an escaped byte in these
outputs; the escapes exist so that no name can forge a line, a field or a terminal sequence, and so
that every output can be written whatever the name.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

# C0 controls, DEL and C1 controls; Unicode format characters that reorder or hide text
# (left-to-right/right-to-left marks and embeddings, overrides, isolates, zero-width joiners,
# the BOM); the line and paragraph separators; and lone surrogates (undecodable bytes).
_CONTROL = re.compile('[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\udc80-\udcff]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's form of the undecodable byte code - 0xDC00
        return f'\\x{code - 0xDC00:02x}'
    if 0xD800 <= code <= 0xDFFF:
        return f'\\u{code:04x}'
    return f'\\x{code:02x}' if code <= 0xFF else f'\\u{code:04x}'


def as_str(name: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A name as ``str`` (bytes decoded as the filesystem encoding does, with surrogates)."""
    return os.fsdecode(os.fspath(name))


def _lone_surrogates_to_bytes(value: str) -> str:
    """Undecodable bytes as ``\\xHH``; any other lone surrogate (never from a file name) the same way."""
    if value.isascii():
        return value
    return re.sub('[\ud800-\udfff]', _escape_char, value)


def text(name: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A name (or a message holding names) as one printable line: see the module's table."""
    value = as_str(name)
    if value.isascii() and value.isprintable():
        return value
    return _CONTROL.sub(_escape_char, _lone_surrogates_to_bytes(value))


def nagios_text(message: str) -> str:
    """The status text or a long-output line of a Nagios plugin."""
    return text(message).replace('|', '\\x7c')


def nagios_label(name: str) -> str:
    """A perfdata label: ``'name'`` with ``|`` and ``=`` escaped and single quotes doubled."""
    cleaned = nagios_text(name).replace('=', '\\x3d')
    return "'" + cleaned.replace("'", "''") + "'"


def prometheus_label(value: str) -> str:
    """A label value of the text exposition format (inside its double quotes): its own escapes for
    backslash, double quote and newline; undecodable bytes and other control characters as
    ``\\xHH`` (so the label's value reads ``\\xHH``)."""
    escaped = _lone_surrogates_to_bytes(as_str(value))
    escaped = escaped.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
    return _CONTROL.sub(lambda m: '\\' + _escape_char(m), escaped)


def json_safe(value: Any) -> Any:
    """``value`` with every string (keys included) free of lone surrogates, recursively."""
    if isinstance(value, str):
        return _lone_surrogates_to_bytes(value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` whose output is valid UTF-8 JSON whatever names ``value`` holds."""
    return json.dumps(json_safe(value), **options)
