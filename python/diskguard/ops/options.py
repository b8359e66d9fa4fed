"""The options the ``diskguard`` subcommands share, in one place: thresholds (one syntax everywhere:
``-w/--warning PCT%|SIZE`` and ``-c/--critical PCT%|SIZE``), what a check covers, alert channels, the
TOML config file that mirrors the long flags, and suggestions for misspelt options.

Each ``add_*`` function adds a group of options to a subcommand's parser; each ``*_from`` function
reads them back (a flag wins over the config file's setting of the same name), parsed and validated,
or raises ``ValueError`` naming the option.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any

from .. import DEFAULT_CRITICAL, DEFAULT_WARN
from . import parse
from .alerts import (
    SMTP_SECURITY,
    WEBHOOK_ENV,
    WEBHOOK_FORMATS,
    Channel,
    Email,
    SmtpSettings,
    Webhook,
    read_setting_file,
    smtp_login,
    webhook_url,
)
from .budgets import Budget
from .check import Limits
from .parse import Threshold

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# The core's defaults as the options spell them ('85%'); '%%' in argparse help, one '%' in values.
WARN = f'{DEFAULT_WARN:.0%}'
CRITICAL = f'{DEFAULT_CRITICAL:.0%}'

# -- subcommands ----------------------------------------------------------------------------------


def add_subcommand(
    commands: Any,
    name: str,
    run: Callable[[argparse.Namespace], int],
    summary: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Registers ``diskguard NAME``, run by ``run`` (which returns the exit code): ``summary`` is its
    line in ``diskguard --help``; its own ``--help`` shows ``description``, else ``run``'s docstring
    (argparse rewraps both, so a docstring reads as one paragraph)."""
    p: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=description or inspect.getdoc(run)
    )
    p.set_defaults(run=run)
    return p


# -- thresholds -----------------------------------------------------------------------------------


def add_threshold_options(p: argparse.ArgumentParser, *, old_fractions: bool = False) -> None:
    """``-w/--warning``, ``-c/--critical``, ``--inodes-warn`` and ``--inodes-critical``.

    ``old_fractions``: the subcommand took ``--warn 0.85`` and ``--critical 0.95`` before (status):
    ``--warn`` stays, unlisted, as another name of ``--warning``, and a bare fraction is read the
    old way (:func:`legacy_limits_from` says it is deprecated)."""
    p.add_argument(
        '-w',
        '--warning',
        metavar='PCT%|SIZE',
        help=f'warn at this %% used or below this much avail ({WARN}%)',
    )
    if old_fractions:
        p.add_argument('--warn', dest='warning', help=argparse.SUPPRESS)
    p.add_argument(
        '-c',
        '--critical',
        metavar='PCT%|SIZE',
        help=f'critical at this %% used or below this avail ({CRITICAL}%)',
    )
    p.add_argument('--inodes-warn', metavar='PCT%', help=f'warn at this %% of inodes used ({WARN}%)')
    p.add_argument(
        '--inodes-critical', metavar='PCT%', help=f'critical at this %% of inodes used ({CRITICAL}%)'
    )


def add_scope_options(p: argparse.ArgumentParser) -> None:
    """What a check or a monitor covers besides its paths: budgets, missing paths, the host's view."""
    p.add_argument(
        '--budget',
        action='append',
        metavar='DIR_OR_GLOB=SIZE',
        help="a per-user/per-project budget, e.g. '/workspace/*=500GiB' (repeatable)",
    )
    p.add_argument(
        '--nearest-ancestor',
        action='store_true',
        default=None,
        help='measure a PATH that does not exist at its nearest existing ancestor (else it is UNKNOWN)',
    )
    p.add_argument(
        '--proc-root',
        metavar='DIR',
        help="the host's /proc mounted in a container, e.g. /host_proc (also silences the container note)",
    )


def option(args: argparse.Namespace, config: dict[str, Any], name: str, default: Any = None) -> Any:
    """A flag's value, else the config file's (same name with underscores), else ``default``."""
    value = getattr(args, name, None)
    if value is None:
        value = config.get(name, default)
    return value


def limits_from(args: argparse.Namespace, config: dict[str, Any], min_free: int | None = None) -> Limits:
    """The thresholds of ``check``, ``watch`` and ``status`` (the core validates them: :class:`Limits`)."""
    return Limits(
        parse.threshold('--warning', str(option(args, config, 'warning', WARN))),
        parse.threshold('--critical', str(option(args, config, 'critical', CRITICAL))),
        parse.percentage('--inodes-warn', str(option(args, config, 'inodes_warn', WARN))),
        parse.percentage('--inodes-critical', str(option(args, config, 'inodes_critical', CRITICAL))),
        bool(option(args, config, 'nearest_ancestor', False)),
        min_free=min_free,
    )


def legacy_limits_from(args: argparse.Namespace, min_free: int | None) -> tuple[Limits, list[str]]:
    """The thresholds of a subcommand that took fractions before (status): ``-w 85%`` and
    ``-c 20GiB`` as everywhere, and still ``--warn 0.85`` and ``--critical 0.95``, which also set
    the inode thresholds as they did. Returns the limits and the deprecation notes to print (once
    the limits are known to be valid, so that a bad value is one line)."""
    notes: list[str] = []
    warning, inodes_warn = _old_or_new(args.warning, args.inodes_warn, WARN, _WARN_NAMES, notes)
    critical, inodes_critical = _old_or_new(
        args.critical, args.inodes_critical, CRITICAL, _CRITICAL_NAMES, notes
    )
    # The old spelling keeps its old messages, which name the API's arguments (warn=2: ...).
    limits = Limits(warning, critical, inodes_warn, inodes_critical, min_free=min_free, flag_names=not notes)
    return limits, notes


#: The option, its old name, its short name and its inode option, for the deprecation notes.
_WARN_NAMES = ('--warning', '--warn', '-w', '--inodes-warn')
_CRITICAL_NAMES = ('--critical', '--critical', '-c', '--inodes-critical')


def _old_or_new(
    text: str | None,
    inodes_text: str | None,
    default: str,
    names: tuple[str, str, str, str],
    notes: list[str],
) -> tuple[Threshold, float]:
    """One level's threshold and inode fraction. A bare number (``0.85``) is the old spelling: a
    fraction, for the inodes too unless they have their own option; a note says it is deprecated."""
    option, old, short, inodes = names
    inode_fraction = parse.percentage(inodes, inodes_text or default)
    if text is None or not re.fullmatch(r'\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*', text):
        return parse.threshold(option, text or default), inode_fraction
    fraction = float(text)
    percent = f'{fraction * 100:g}%'
    also = f' {inodes} {percent}' if inodes_text is None else ''
    notes.append(
        f'{old} {text.strip()} (a fraction) is deprecated: write {short} {percent}{also}, as every '
        'subcommand takes it (PCT% used, or a SIZE of available space)'
    )
    return Threshold(fraction=fraction), fraction if inodes_text is None else inode_fraction


# -- alerts -----------------------------------------------------------------------------------------


def add_alert_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        '--webhook',
        metavar='URL',
        help=f'POST alerts as JSON to URL (kept out of logs; one with a key: --webhook-file or ${WEBHOOK_ENV})',
    )
    p.add_argument('--webhook-file', metavar='FILE', help='the webhook URL on the first line of FILE')
    p.add_argument(
        '--webhook-format', choices=WEBHOOK_FORMATS, help='payload: generic JSON, wecom or slack robot'
    )
    p.add_argument('--email', action='append', metavar='TO', help='e-mail alerts to TO (repeatable)')
    p.add_argument('--smtp-host', metavar='HOST', help='SMTP server (localhost)')
    p.add_argument(
        '--smtp-port', metavar='PORT', help='SMTP port (587 with starttls, 465 with tls, 25 with none)'
    )
    p.add_argument('--smtp-security', choices=SMTP_SECURITY, help='starttls (default), tls or none')
    p.add_argument('--smtp-from', metavar='ADDRESS', help='sender address (diskguard@this host)')
    p.add_argument(
        '--smtp-login-file',
        metavar='FILE',
        help='user on line 1, password on line 2 (else DISKGUARD_SMTP_USER/DISKGUARD_SMTP_PASSWORD)',
    )


def budgets_from(args: argparse.Namespace, config: dict[str, Any]) -> list[Budget]:
    found = [Budget(*parse.budget('--budget', text)) for text in getattr(args, 'budget', None) or []]
    table = config.get('budgets', {})
    if not isinstance(table, dict):
        raise TypeError("config: [budgets] must be a table of 'DIR_OR_GLOB' = 'SIZE'")
    found += [
        Budget(pattern, parse.size(f'budgets.{pattern}', str(limit))) for pattern, limit in table.items()
    ]
    return found


def channels_from(args: argparse.Namespace, config: dict[str, Any]) -> list[Channel]:
    channels: list[Channel] = []
    # The command line first (with a warning when the URL holds a key), then the files, then $ENV.
    url, warning = webhook_url(getattr(args, 'webhook', None), getattr(args, 'webhook_file', None), {})
    if url is None:
        url, _ = webhook_url(config.get('webhook'), config.get('webhook_file'))
    if warning:
        print(f'diskguard: warning: {warning}', file=sys.stderr)
    if url:
        channels.append(Webhook(str(url), str(option(args, config, 'webhook_format', 'generic'))))
    to = option(args, config, 'email')
    if to:
        user, password = smtp_login(option(args, config, 'smtp_login_file'))
        port = option(args, config, 'smtp_port')
        settings = SmtpSettings(
            host=str(option(args, config, 'smtp_host', 'localhost')),
            port=None if port is None else parse.count('--smtp-port', port, maximum=65535),
            security=str(option(args, config, 'smtp_security', 'starttls')),
            sender=option(args, config, 'smtp_from'),
            user=user,
            password=password,
        )
        channels.append(Email([to] if isinstance(to, str) else list(to), settings))
    return channels


# -- the config file ----------------------------------------------------------------------------------

#: Settings a config file may hold (the long flags, with underscores), plus ``paths`` and ``[budgets]``.
CONFIG_KEYS = frozenset(
    {
        'paths', 'interval', 'warning', 'critical', 'inodes_warn', 'inodes_critical', 'hysteresis',
        'reminder', 'forecast_horizon', 'budget_interval', 'budgets', 'state_file', 'textfile', 'listen',
        'proc_root', 'webhook', 'webhook_format', 'email', 'smtp_host', 'smtp_port', 'smtp_security',
        'smtp_from', 'smtp_login_file', 'trend_window', 'trend_warmup', 'webhook_file', 'nearest_ancestor',
        'alert_failure_critical',
    }
)  # fmt: skip
#: Settings that hold a list of strings, a table, or a true/false; every other one holds one value.
LIST_KEYS = {'paths': '["/workspace", "/tmp"]', 'email': '["ops@example.com"]'}
BOOL_KEYS = frozenset({'nearest_ancestor', 'alert_failure_critical'})
#: The largest config file read (a config is a few hundred bytes; /dev/zero never ends).
CONFIG_LIMIT = 1024 * 1024


def add_paths_option(p: argparse.ArgumentParser, what: str) -> None:
    """The positional PATHs (:func:`paths_from`: else ``paths`` in the config file)."""
    p.add_argument('paths', nargs='*', metavar='PATH', help=f'paths to {what} (or `paths` in --config)')


def paths_from(args: argparse.Namespace, config: dict[str, Any], command: str) -> list[str]:
    """The PATHs, else ``paths`` from the config file (a list of strings: :func:`load_config`)."""
    paths = list(args.paths) or list(config.get('paths', []))
    if not paths or not all(paths):
        raise ValueError(f'{command}: give at least one PATH (or paths = [...] in --config)')
    return paths


def load_config(path: str | None) -> dict[str, Any]:
    """The TOML config file as a dict (empty without one); unknown keys are refused, so a typo is
    not silently ignored, and secrets have no key (logins come from a file or the environment)."""
    if path is None:
        return {}
    data = read_setting_file(path, '--config', CONFIG_LIMIT + 1)
    if len(data) > CONFIG_LIMIT:
        raise ValueError(f'--config={path!r}: larger than {CONFIG_LIMIT // 1024} KiB, not a config file')
    try:
        config = tomllib.loads(data.decode('utf-8'))
    except UnicodeDecodeError:
        raise ValueError(f'--config={path!r}: cannot read it (not UTF-8 text)') from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f'--config={path!r}: not valid TOML ({err})') from None
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f'--config={path!r}: unknown setting(s) {", ".join(unknown)}; known: {", ".join(sorted(CONFIG_KEYS))}'
        )
    for key, value in config.items():
        problem = _config_type_problem(key, value)
        if problem:
            raise ValueError(f'--config={path!r}: {key} {problem}')
    return config


def _config_type_problem(key: str, value: Any) -> str | None:
    """What is wrong with the type of ``key = value``, or None: a string where a list is expected
    (``paths = "/tmp"`` would otherwise watch ``/``, ``t``, ``m``, ``p``), a list for one value."""
    kind = type(value).__name__.replace('str', 'string').replace('dict', 'table')
    if key in LIST_KEYS:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return f'must be a list of strings such as {LIST_KEYS[key]}, not a {kind}'
    elif key == 'budgets':
        if not isinstance(value, dict):
            return "must be a table of 'DIR_OR_GLOB' = 'SIZE' ([budgets])"
    elif key in BOOL_KEYS:
        if not isinstance(value, bool):
            return f'must be true or false, not a {kind}'
    elif not isinstance(value, str | int | float) or isinstance(value, bool):
        return f'must be one value (a string or a number), not a {kind}'
    return None


# -- misspelt options ---------------------------------------------------------------------------------


def with_suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """``message`` plus ``did you mean --warning?`` for each misspelt option it names."""
    match = re.match(r'unrecognized arguments: (.*)', message)
    if not match:
        return message
    known = [o for a in parser._actions for o in a.option_strings if o.startswith('--')]
    hints = []
    for word in match.group(1).split():
        name = word.split('=', 1)[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if name.startswith('-') else []
        if close:
            hints.append(f'{name}: did you mean {close[0]}?')
    return '; '.join([message, *hints])
