"""The operations subcommands of ``diskguard``: ``check``, ``du``, ``orphans`` and ``watch``.

:func:`add_commands` registers them on the main parser; each handler returns the exit code and
raises ``ValueError`` for a bad argument (the main entry point prints it on one line).
"""

from __future__ import annotations

import argparse
import os
import pwd
import stat
import sys
from typing import Any, NoReturn

from .. import DuEntry, DuOwner, du, find_orphans, format_size, remove_orphans
from . import escape as names
from . import parse
from .alerts import Alert, Delivery, deliver, summarize
from .budgets import BudgetResult, measure_all
from .check import (
    CRITICAL as CRITICAL_STATE,
)
from .check import (
    OK,
    STATE_NAMES,
    UNKNOWN,
    FsResult,
    Limits,
    check_path,
    status_line,
    summary,
    to_json,
    worst,
)
from .container import CONTAINER_NOTE, host_path, host_table, in_container
from .options import (
    add_alert_options,
    add_paths_option,
    add_scope_options,
    add_subcommand,
    add_threshold_options,
    budgets_from,
    channels_from,
    limits_from,
    load_config,
    option,
    paths_from,
    with_suggestion,
)
from .prometheus import render, textfile_directory, write_textfile
from .watch import add_watch_command

#: ``check --textfile DIR`` writes this file; ``watch`` writes ``diskguard.prom``: one producer per
#: file, so neither replaces the other's series (watch's budgets and forecast stay when check runs).
CHECK_TEXTFILE = 'diskguard-check.prom'

#: The exit code of a command interrupted by Ctrl-C (128 + SIGINT), as shells use.
EXIT_INTERRUPTED = 130


def add_commands(commands: Any) -> None:
    """Adds ``check``, ``du``, ``orphans`` and ``watch`` to the ``diskguard`` subparsers."""
    _add_check(commands)
    _add_du(commands)
    _add_orphans(commands)
    add_watch_command(commands)


def measure(paths: list[str], limits: Limits, proc_root: str | None) -> tuple[list[FsResult], list[str]]:
    """Checks every path; with ``proc_root`` each result carries its host path. Returns the results
    and notes about the view (a container without the host's /proc: said once per run, on stderr or
    in ``--json``; ``--proc-root`` silences it)."""
    results = [check_path(p, limits) for p in paths]
    notes: list[str] = []
    if proc_root is not None:
        table = host_table(proc_root)
        for r in results:
            if r.usage is not None:
                r.host_path = host_path(r.path, table)
    elif in_container():
        notes.append(CONTAINER_NOTE)
    return results, notes


# -- check ----------------------------------------------------------------------------------------


def _unknown_on_bad_arguments(parser: argparse.ArgumentParser) -> None:
    """A plugin's bad command line is UNKNOWN (3), not argparse's 2 (monitoring.md §5.1)."""

    def error(message: str) -> NoReturn:
        # Nagios reads the first line of stdout.
        print(f'DISK UNKNOWN - diskguard check: {names.nagios_text(with_suggestion(parser, message))}')
        sys.exit(UNKNOWN)

    parse_known = parser.parse_known_args

    def strict(args: Any = None, namespace: Any = None) -> Any:
        # Unknown options would otherwise reach the main parser, whose error exits 2.
        known, extras = parse_known(args, namespace)
        if extras:
            error(f'unrecognized arguments: {" ".join(extras)}')
        return known, extras

    parser.error = error  # type: ignore[method-assign]
    parser.parse_known_args = strict  # type: ignore[method-assign]


def _add_check(commands: Any) -> None:
    summary = 'Nagios/Icinga plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, with perfdata'
    p = add_subcommand(commands, 'check', run_check, summary)
    add_paths_option(p, 'check')
    add_threshold_options(p)
    add_scope_options(p)
    p.add_argument(
        '--textfile',
        metavar='DIR',
        help=f'write DIR/{CHECK_TEXTFILE} for node_exporter (atomically; watch writes its own file)',
    )
    add_alert_options(p)
    p.add_argument(
        '--alert-failure-critical',
        action='store_true',
        default=None,
        help='exit CRITICAL when an alert could not be delivered on some channel',
    )
    p.add_argument('--json', action='store_true', help='machine-readable output (same exit codes)')
    p.add_argument(
        '--config', metavar='FILE', help='a TOML file with the same settings, paths included (see examples/)'
    )
    _unknown_on_bad_arguments(p)


def check_alert(results: list[FsResult], budgets: list[BudgetResult], state: int) -> Alert:
    """Every filesystem and every budget not OK, one line each, each saying its own state; the title
    names what is not OK."""
    lines = [f'{STATE_NAMES[r.state]}: {summary(r)}' for r in results]
    lines += [f'{STATE_NAMES[b.state]}: budget {b.describe()}' for b in budgets if b.state != OK]
    bad = [f'{r.path} {STATE_NAMES[r.state]}' for r in results if r.state != OK]
    bad += [f'budget {b.directory} {STATE_NAMES[b.state]}' for b in budgets if b.state != OK]
    details = {'filesystems': [r.path for r in results], 'budgets': [b.to_json() for b in budgets]}
    return Alert.about(STATE_NAMES[state], lines, details, subject=summarize(bad))


def report_deliveries(command: str, deliveries: list[Delivery]) -> None:
    """Every channel that did not take the alert, one line each on stderr (errors redacted)."""
    for d in deliveries:
        if not d.ok:
            print(f'diskguard {command}: alert via {d.channel} not delivered: {d.error}', file=sys.stderr)


def run_check(args: argparse.Namespace) -> int:
    """Check the filesystems under PATHs and any budgets, in the Monitoring Plugins conventions: one
    status line with perfdata ('label'=usedB;warn;crit;0;total), exit 0/1/2/3. Percentages are of
    what non-root can use, as df counts; sizes are floors of available space."""
    try:
        config = load_config(args.config)
        paths = paths_from(args, config, 'check')
        limits = limits_from(args, config)
        budgets = budgets_from(args, config)
        channels = channels_from(args, config)
        failure_critical = bool(option(args, config, 'alert_failure_critical', False))
        textfile = option(args, config, 'textfile')
        if textfile is not None:
            textfile = textfile_directory(str(textfile))
        results, notes = measure(paths, limits, option(args, config, 'proc_root'))
        budget_results = measure_all(budgets)
    except (ValueError, TypeError, OSError) as err:
        # Monitoring Plugins: a bad argument or a failure of the plugin itself is UNKNOWN.
        print(f'DISK UNKNOWN - {names.nagios_text(" ".join(str(err).split()))}')
        return UNKNOWN
    state = worst([r.state for r in results] + [b.state for b in budget_results])
    if textfile:
        write_textfile(str(textfile), render(results, budget_results), CHECK_TEXTFILE)
    deliveries: list[Delivery] = []
    if channels and state != OK:
        deliveries = deliver(channels, check_alert(results, budget_results, state))
        report_deliveries('check', deliveries)
    undelivered = [d.channel for d in deliveries if not d.ok]
    code = worst([state, CRITICAL_STATE]) if failure_critical and undelivered else state
    extra = [f'budget {b.describe()}' for b in budget_results if b.state != OK]
    extra += [f'alert not delivered via {name}' for name in undelivered]
    if args.json:
        payload = {
            'state': STATE_NAMES[code],
            'exit_code': code,
            'filesystems': [to_json(r, limits) for r in results],
            'budgets': [b.to_json() for b in budget_results],
            'alerts': [d.to_json() for d in deliveries],
            'notes': notes,
        }
        print(names.json_dumps(payload, indent=2))
    else:
        print(status_line(results, limits, extra, code))
        # Long output (lines after the first): whatever the one line could not hold.
        for r in results:
            if r.host_path is not None and r.host_path != os.path.abspath(r.path):
                print(names.nagios_text(f'{r.path}: host mount point {r.host_path}'))
        for b in budget_results:
            print(names.nagios_text(f'budget {STATE_NAMES[b.state]}: {b.describe()}'))
        for note in notes:
            print(names.text(f'note: {note}'), file=sys.stderr)
    return code


# -- du ---------------------------------------------------------------------------------------------


def _add_du(commands: Any) -> None:
    p = add_subcommand(
        commands, 'du', run_du, 'who is eating the disk: a parallel scan of DIR by entry or by owner'
    )
    p.add_argument('dir', metavar='DIR')
    p.add_argument('--top', default='20', metavar='N', help='show the N largest (20)')
    p.add_argument('--by', choices=('dir', 'user'), default='dir', help="group by DIR's entries or by owner")
    p.add_argument('--apparent-size', action='store_true', help='sort by length instead of allocated size')
    p.add_argument('--cross-filesystems', action='store_true', help='descend into other mounted filesystems')
    p.add_argument('--threads', metavar='N', help='worker threads (3 per core)')
    p.add_argument(
        '--proc-root', metavar='DIR', help="the host's /proc mounted in a container, e.g. /host_proc"
    )
    p.add_argument('--json', action='store_true', help='machine-readable output')


class _ProgressLine:
    """``scanned 120,000 entries, 4.1 GiB`` on stderr, at most a few times a second."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, entries: int, allocated: int) -> None:
        sys.stderr.write(f'\rscanned {entries:,} entries, {format_size(allocated)}   ')
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write('\r' + ' ' * 60 + '\r')
            sys.stderr.flush()


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def run_du(args: argparse.Namespace) -> int:
    """Scan DIR on several threads (hard links once, symlinks not followed, one filesystem unless
    --cross-filesystems) and list its largest entries or owners. Ctrl-C stops the scan."""
    top = parse.count('--top', args.top)
    threads = None if args.threads is None else parse.count('--threads', args.threads, maximum=256)
    progress = _ProgressLine() if sys.stderr.isatty() else None
    try:
        report = du(args.dir, threads=threads, one_filesystem=not args.cross_filesystems, progress=progress)
    except KeyboardInterrupt:
        if progress:
            progress.clear()
        print('diskguard: du: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED
    except FileNotFoundError:
        # A DIR that does not exist is a wrong argument (exit 2), as everywhere but check.
        raise ValueError(f'DIR={args.dir!r}: no such file or directory') from None
    if progress:
        progress.clear()
    key = 'apparent' if args.apparent_size else 'allocated'
    rows: list[tuple[str, DuEntry | DuOwner]]
    if args.by == 'user':
        rows = [(user_name(o.uid), o) for o in report.owners]
    else:
        rows = [(os.fsdecode(c.name) + ('/' if c.is_dir else ''), c) for c in report.children]
    if not args.json:
        rows = [(names.text(name), e) for name, e in rows]
    rows.sort(key=lambda row: getattr(row[1], key), reverse=True)
    shown = rows[:top]
    where = view(args.dir, args.proc_root)
    if args.json:
        print(names.json_dumps({**_du_json(report, args.by, shown), **where}, indent=2))
    else:
        _du_table(report, args.by, shown, len(rows))
        if 'host_path' in where and where['host_path'] != os.path.realpath(args.dir):
            print(f'on the host: {names.text(where["host_path"])}')
        for note in where.get('notes', []):
            print(f'note: {note}', file=sys.stderr)
    return 0


def view(path: str, proc_root: str | None) -> dict[str, Any]:
    """``{'host_path': ...}`` with the host's /proc, else the container note when in one."""
    if proc_root is not None:
        return {'host_path': host_path(path, host_table(proc_root))}
    return {'notes': [CONTAINER_NOTE]} if in_container() else {}


def _du_json(report: Any, by: str, shown: list[tuple[str, Any]]) -> dict[str, Any]:
    return {
        'dir': os.fsdecode(report.root),
        'allocated_bytes': report.allocated,
        'apparent_bytes': report.apparent,
        'files': report.files,
        'dirs': report.dirs,
        'by': by,
        'top': [
            {
                'name': name,
                'allocated_bytes': e.allocated,
                'apparent_bytes': e.apparent,
                'files': e.files,
                'dirs': e.dirs,
                **({'owner': user_name(e.uid)} if by == 'dir' else {}),
            }
            for name, e in shown
        ],
        'errors': report.errors,
        'error_samples': report.error_samples,
        'other_filesystems_skipped': report.other_filesystems,
    }


def _du_table(report: Any, by: str, shown: list[tuple[str, Any]], total_rows: int) -> None:
    label = 'USER' if by == 'user' else 'ENTRY'
    print(
        f'{"SIZE":>10} {"APPARENT":>10} {"FILES":>10}  {"OWNER" if by == "dir" else "":<10} {label}'.rstrip()
    )
    for name, e in shown:
        owner = user_name(e.uid) if by == 'dir' else ''
        print(
            f'{format_size(e.allocated):>10} {format_size(e.apparent):>10} {e.files:>10,}  {owner:<10} {name}'
        )
    if total_rows > len(shown):
        print(f'... and {total_rows - len(shown)} more')
    print(
        f'{format_size(report.allocated):>10} {format_size(report.apparent):>10} {report.files:>10,}  '
        f'{"":<10} total of {names.text(report.root)}'
    )
    if report.other_filesystems:
        print(
            f'note: {_count(report.other_filesystems, "directory", "directories")} on other filesystems '
            'skipped (--cross-filesystems)'
        )
    if report.errors:
        print(
            f'note: {_count(report.errors, "entry", "entries")} could not be read, '
            f'e.g. {names.text(report.error_samples[0])}',
            file=sys.stderr,
        )


def _count(n: int, one: str, many: str) -> str:
    return f'{n:,} {one if n == 1 else many}'


# -- orphans ----------------------------------------------------------------------------------------


def _add_orphans(commands: Any) -> None:
    p = add_subcommand(
        commands, 'orphans', run_orphans, 'list (or --delete) leftovers of crashed checkpoint saves'
    )
    p.add_argument('dir', metavar='DIR')
    p.add_argument('--delete', action='store_true', help='remove what is listed')
    p.add_argument('--min-age', default='1h', metavar='DURATION', help='only leftovers older than this (1h)')
    p.add_argument('--temp-dir', metavar='DIR', help='where saves are staged (the system temp dir)')
    p.add_argument('--no-temp-dir', action='store_true', help='look in DIR only')
    p.add_argument('--json', action='store_true', help='machine-readable output')


def run_orphans(args: argparse.Namespace) -> int:
    """Partial saves in DIR and known staging files in the temp directory, owned by you and older
    than --min-age. Nothing is deleted without --delete; each is re-checked before deletion."""
    min_age = parse.duration('--min-age', args.min_age, minimum=0)
    if not os.path.lexists(args.dir):
        raise ValueError(f'DIR={args.dir!r}: no such directory')
    if not stat.S_ISDIR(os.stat(args.dir).st_mode):
        raise ValueError(f'DIR={args.dir!r}: not a directory (orphans needs the checkpoint directory)')
    found = find_orphans(
        args.dir, temp_dir=args.temp_dir, include_temp_dir=not args.no_temp_dir, min_age=min_age
    )
    results = remove_orphans(found) if args.delete else []
    if args.json:
        print(
            names.json_dumps(
                {
                    'orphans': [
                        {'path': o.path, 'size': o.size, 'age_seconds': o.age, 'reason': o.reason}
                        for o in found
                    ],
                    'results': [{'path': r.path, 'outcome': r.outcome, 'detail': r.detail} for r in results],
                },
                indent=2,
            )
        )
    else:
        for o in found:
            print(f'{format_size(o.size):>10}  {_age(o.age):>8}  {names.text(o.path)}  ({o.reason})')
        total = sum(o.size for o in found)
        print(
            f'{len(found)} orphan(s), {format_size(total)}'
            + ('' if args.delete or not found else ' (--delete removes them)')
        )
        for r in results:
            detail = f'  ({names.text(r.detail)})' if r.detail else ''
            print(f'{r.outcome:<8} {names.text(r.path)}{detail}')
    return 1 if any(r.outcome == 'failed' for r in results) else 0


def _age(seconds: float) -> str:
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds >= size:
            return f'{seconds / size:.1f}{unit}'
    return f'{seconds:.0f}s'
