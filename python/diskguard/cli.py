"""The ``diskguard`` command.

``diskguard`` alone reports on the disk under the current directory. ``diskguard status PATH...``
reports on other paths, ``diskguard mounts`` lists the mount table. ``check``, ``du``, ``orphans`` and
``watch`` are the operations commands (:mod:`diskguard.ops`); ``diskguard demo`` runs a guarded
training demo (needs torch).
"""

from __future__ import annotations

import argparse
import errno
import io
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import (
    CheckResult,
    DeletionOutcome,
    DirectoryBusyError,
    KeepBest,
    KeepEvery,
    KeepLast,
    KeepWithin,
    Protect,
    RetentionPlan,
    RetentionPolicy,
    __version__,
    apply,
    format_plan,
    format_size,
    mounts,
    plan,
    usage,
)
from .demo import add_parser as add_demo_parser
from .ops import parse
from .ops.check import cwd_deleted
from .ops.commands import add_commands
from .ops.escape import json_dumps, text
from .ops.options import add_subcommand, add_threshold_options, legacy_limits_from, with_suggestion
from .retention import display_name


def _percent(value: float | None) -> str:
    return '-' if value is None else f'{value:.1f}%'


def _status_lines(result: CheckResult) -> list[str]:
    u = result.usage
    # Paths, the device and the reasons are names other users choose: escaped (diskguard.ops.escape).
    where = u.queried_path if u.path_exists else f'{u.queried_path} (nearest existing ancestor of {u.path})'
    mount = f'{u.mount_point}  ({u.fs_type} on {u.device or "?"})'
    lines = [
        f'disk under {text(u.path)}',
        f'  measured    {text(where)}',
        f'  mount       {text(mount)}{"  read-only" if u.read_only else ""}',
        f'  size        {format_size(u.total)}',
        f'  used        {format_size(u.used)}  ({u.percent_used:.1f}% of what non-root can use, as df counts)',
        f'  available   {format_size(u.avail)}  (writable by non-root processes such as training jobs)',
        f'  reserved    {format_size(u.reserved)}  (root-only reserve, not available to training jobs)',
    ]
    if u.inodes_total is None:
        lines.append('  inodes      not counted by this filesystem')
    else:
        lines.append(
            f'  inodes      {u.inodes_used} of {u.inodes_total} used ({_percent(u.inodes_percent_used)}), '
            f'{u.inodes_free} free'
        )
    if u.is_overlay:
        lines.append(
            "  note        overlay filesystem: in a container these are the host partition's numbers"
        )
    status = str(result.level).upper()
    lines.append(
        f'  status      {status}' + (f': {text("; ".join(result.reasons))}' if result.reasons else '')
    )
    return lines


def _status(args: argparse.Namespace) -> int:
    min_free = None if args.min_free is None else parse.size('--min-free', args.min_free, minimum=0)
    limits, deprecated = legacy_limits_from(args, min_free)
    for note in deprecated:
        print(f'diskguard: warning: {note}', file=sys.stderr)
    for path in args.paths or ['.']:
        if cwd_deleted(path):
            raise FileNotFoundError(
                errno.ENOENT,
                'the current directory was deleted: cd to a directory that exists, or give a PATH',
            )
    results = [limits.grading.grade(usage(path)) for path in args.paths or ['.']]
    if args.json:
        payload = [{**r.usage.to_dict(), 'level': str(r.level), 'reasons': list(r.reasons)} for r in results]
        print(json_dumps(payload if len(payload) > 1 else payload[0], indent=2))
    else:
        print(f'diskguard {__version__}')
        print('\n\n'.join('\n'.join(_status_lines(r)) for r in results))
    return max(int(r.level) for r in results)


def _mounts(args: argparse.Namespace) -> int:
    table = mounts(args.proc_root, args.pid)
    if args.json:
        keys = ['mount_id', 'parent_id', 'major', 'minor', 'root', 'mount_point', 'fs_type', 'source']
        keys += ['mount_options', 'super_options', 'read_only', 'is_overlay']
        print(json_dumps([{k: getattr(m, k) for k in keys} for m in table], indent=2))
        return 0
    rows = [(text(m.mount_point), text(m.fs_type), text(m.source), m) for m in table]
    width = max((len(point) for point, _, _, _ in rows), default=10)
    print(f'{"MOUNT POINT":<{width}}  {"TYPE":<12} {"DEVICE":<24} FLAGS')
    for point, fs_type, source, m in rows:
        flags = ','.join(f for f, on in (('ro', m.read_only), ('overlay', m.is_overlay)) if on)
        print(f'{point:<{width}}  {fs_type:<12} {source:<24} {flags}')
    return 0


def _policy(args: argparse.Namespace) -> RetentionPolicy:
    rules: list[KeepLast | KeepBest | KeepEvery | KeepWithin | Protect] = []
    if args.keep_last is not None:
        rules.append(KeepLast(args.keep_last))
    if args.keep_best is not None:
        if not args.metric:
            raise ValueError(
                '--keep-best needs --metric NAME (as it appears in the file names, e.g. val_loss)'
            )
        rules.append(KeepBest(args.keep_best, args.metric, args.mode))
    if args.keep_every is not None:
        rules.append(KeepEvery(args.keep_every))
    if args.keep_within is not None:
        rules.append(KeepWithin(args.keep_within * 3600.0))
    if args.protect:
        rules.append(Protect(*args.protect))
    return RetentionPolicy(*rules)


def _apply_announcing_waits(current: RetentionPlan, args: argparse.Namespace) -> Sequence[DeletionOutcome]:
    """Applies the plan; when another process holds the lock, says who and waits as told (never silently)."""
    try:
        return apply(current, wait=False)
    except DirectoryBusyError as err:
        if args.no_wait:
            raise
        bound = 'as long as it takes' if args.timeout is None else f'up to {args.timeout:g} s'
        print(
            f'diskguard prune: {err}; waiting {bound} (--no-wait gives up at once, --timeout SECONDS bounds the wait)',
            file=sys.stderr,
            flush=True,
        )
        return apply(current, timeout=args.timeout)


def _prune_report(current: RetentionPlan, results: Sequence[DeletionOutcome], dry_run: bool) -> str:
    items = [
        {
            'name': str(i.name),
            'action': i.action,
            'reasons': i.reasons,
            'step': i.step,
            'epoch': i.epoch,
            'metrics': dict(i.metrics),
            'size': i.size,
            'bytes_freed': i.bytes_freed,
            'complete': i.complete,
        }
        for i in current.items
    ]
    done = [{'path': str(r.path), 'outcome': r.outcome, 'detail': r.detail} for r in results]
    return json_dumps({'dir': str(current.dir), 'dry_run': dry_run, 'plan': items, 'results': done}, indent=2)


def _prune(args: argparse.Namespace) -> int:
    """``diskguard prune``: exit 0 when done, 1 when a deletion failed, 3 when steps and write times
    disagree and neither reading is clear (without ``--order``); errors are main()'s (2 for bad
    arguments, a DIR that does not exist included; 3 otherwise: the lock is held, the directory
    cannot be read)."""
    if not os.path.lexists(args.dir):
        # A DIR that does not exist is a wrong argument (exit 2), as in du and orphans.
        raise ValueError(f'DIR={args.dir!r}: no such directory')
    policy = _policy(args)
    keeping = [r for r in policy.rules if not isinstance(r, Protect)]
    if not keeping and not args.dry_run:
        # With no rule only the newest complete checkpoint would survive: too easy to type by mistake.
        raise ValueError(
            'prune: give at least one of --keep-last, --keep-best, --keep-every, --keep-within '
            '(or --dry-run to see what the invariant alone keeps)'
        )
    current = plan(args.dir, policy, order=args.order)
    if current.ambiguity is not None:
        # Steps and write times disagree and neither reading is clear: do not guess which is newer.
        print(
            f'diskguard prune: {current.ambiguity}; nothing deleted: pass --order step (a later write '
            'of a lower step is an old checkpoint copied or touched) or --order time (a run restarted '
            'in the same directory is newer than the one before)',
            file=sys.stderr,
        )
        return 3
    if not args.json:
        # Printed before anything is deleted, and with names any terminal can show.
        print(format_plan(current), flush=True)
    results: Sequence[DeletionOutcome] = [] if args.dry_run else _apply_announcing_waits(current, args)
    if args.json:
        print(_prune_report(current, results, args.dry_run))
    elif args.dry_run:
        print('dry run: nothing deleted (run without --dry-run to apply)')
    else:
        for r in results:
            print(f'{r.outcome:<8} {display_name(r.path)}' + (f'  ({text(r.detail)})' if r.detail else ''))
    return 1 if any(r.outcome == 'failed' for r in results) else 0


class _Parser(argparse.ArgumentParser):
    """argparse with suggestions for misspelt options (``--warm``: did you mean ``--warning``?);
    subcommands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f'{self.prog}: error: {with_suggestion(self, message)}\n')


def _subcommand(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]  # type: ignore[no-any-return]
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog='diskguard',
        description='How full is the disk under a path, the way df computes it. '
        'With no command: a status report of the disk under the current directory.',
    )
    parser.add_argument('--version', action='version', version=f'diskguard {__version__}')
    commands = parser.add_subparsers(dest='command')
    status = add_subcommand(commands, 'status', _status, 'report usage and threshold status of paths')
    status.add_argument('paths', nargs='*', metavar='PATH', help='paths to report on (default: .)')
    add_threshold_options(status, old_fractions=True)
    status.add_argument('--min-free', default=None, help='critical below this much available, e.g. 20GiB')
    status.add_argument('--json', action='store_true', help='machine-readable output')
    table = add_subcommand(commands, 'mounts', _mounts, 'list the mount table')
    table.add_argument('--proc-root', default=None, help="another proc mount, e.g. the host's /host/proc")
    table.add_argument('--pid', default=None, help='whose mount namespace (default: self, or 1 elsewhere)')
    table.add_argument('--json', action='store_true', help='machine-readable output')
    prune = add_subcommand(
        commands,
        'prune',
        _prune,
        'delete checkpoints no rule keeps (always keeps the newest complete one)',
        'Plan which checkpoints to keep (a checkpoint is kept if any rule keeps it), show why, and delete '
        'the rest. The newest complete checkpoint and symlink targets (last.ckpt) are always kept; '
        'partial saves are never counted.',
    )
    prune.add_argument('dir', help='the checkpoint directory')
    prune.add_argument('--keep-last', type=int, metavar='N', help='keep the newest N complete checkpoints')
    prune.add_argument('--keep-best', type=int, metavar='K', help='keep the K best by --metric')
    prune.add_argument('--metric', help='metric name as it appears in file names, e.g. val_loss')
    prune.add_argument(
        '--mode', choices=('min', 'max'), default='min', help='min for losses, max for accuracy'
    )
    prune.add_argument('--keep-every', type=int, metavar='STEPS', help='keep milestones every STEPS steps')
    prune.add_argument('--keep-within', type=float, metavar='HOURS', help='keep those saved within HOURS')
    prune.add_argument(
        '--protect',
        action='append',
        metavar='PATH',
        help='never delete PATH: an entry name, or a path in DIR (repeatable)',
    )
    prune.add_argument(
        '--order',
        choices=('step', 'time'),
        help='which checkpoint is newer where steps and write times disagree: step (a later write of '
        'a lower step is a copied or touched checkpoint) or time (a later generation of lower steps '
        'is a restart); without it an unclear directory exits 3 naming both orders',
    )
    prune.add_argument('--dry-run', action='store_true', help='show the plan, delete nothing')
    waiting = prune.add_mutually_exclusive_group()
    waiting.add_argument(
        '--no-wait', action='store_true', help='fail (exit 3) when another process is pruning DIR'
    )
    waiting.add_argument(
        '--timeout',
        type=float,
        metavar='SECONDS',
        help='wait at most SECONDS for another process pruning DIR (default: as long as it takes)',
    )
    prune.add_argument('--json', action='store_true', help='machine-readable output')
    # Operations commands (check, du, orphans, watch) live in diskguard.ops.
    add_commands(commands)
    add_demo_parser(commands)
    return parser


#: Exit code for a command line or argument that is wrong (as argparse uses).
EXIT_USAGE = 2
#: Exit code when the state could not be determined (Nagios' UNKNOWN).
EXIT_UNKNOWN = 3


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diskguard`` console script; returns the exit code.

    ``status`` exits with the worst level's Nagios code (0 ok, 1 warn, 2 critical). A wrong argument
    prints one line and exits 2; a failure to measure (an OS error, another process holding a lock)
    prints one line and exits 3. Set ``DISKGUARD_DEBUG=1`` to see the traceback instead.
    """
    # Paths are bytes on Linux: print names that are not UTF-8 as the bytes they are, like ls(1),
    # instead of dying halfway through a report.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors='surrogateescape')
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if args.command is None:
        args, extras = parser.parse_known_args(['status', *(sys.argv[1:] if argv is None else argv)])
    if extras:
        # The subcommand's own usage and suggestions, not the top-level usage.
        _subcommand(parser, args.command).error(f'unrecognized arguments: {" ".join(extras)}')
    try:
        return int(args.run(args))
    except BrokenPipeError:
        # The reader went away (`diskguard mounts | head`); nothing left to say.
        sys.stderr.close()
        return 0
    except Exception as err:
        if os.environ.get('DISKGUARD_DEBUG'):
            raise
        code = EXIT_USAGE if isinstance(err, ValueError | TypeError) else EXIT_UNKNOWN
        print(f'diskguard: error: {_one_line(err)}', file=sys.stderr)
        return code


def _one_line(err: BaseException) -> str:
    text = ' '.join(str(err).split()) or type(err).__name__
    return text if isinstance(err, ValueError | TypeError | OSError) else f'{type(err).__name__}: {text}'


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
