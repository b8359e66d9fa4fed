"""The compiled core of diskguard. Import ``diskguard``, not this module."""

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Literal, TypeAlias, final

from diskguard._options import GuardOptions
from diskguard._types import Size as _Size
from diskguard._types import StrPath as _StrPath

__all__ = [
    'DEFAULT_CRITICAL',
    'DEFAULT_WARN',
    'OWN_PREFIX',
    'CheckResult',
    'DeletionOutcome',
    'DirectoryBusyError',
    'DiskGuardError',
    'DiskUsage',
    'DuEntry',
    'DuOwner',
    'DuReport',
    'FreeSpaceResult',
    'GuardEvent',
    'GuardMetrics',
    'GuardSpace',
    'GuardState',
    'GuardStatus',
    'InsufficientSpaceError',
    'KeepBest',
    'KeepEvery',
    'KeepLast',
    'KeepWithin',
    'Level',
    'LogBudget',
    'Mount',
    'Orphan',
    'PlanItem',
    'Protect',
    'RetentionPlan',
    'RetentionPolicy',
    'RunForecast',
    'TrendEstimate',
    'TrendMonitor',
    '_Grading',
    '_Guard',
    '__version__',
    '_find_orphans',
    '_free_space',
    '_rebuild_insufficient_space',
    '_remove_orphans',
    '_shared_filesystem',
    'apply',
    'check',
    'du',
    'forecast_run',
    'format_size',
    'latest_complete',
    'log_budget',
    'mounts',
    'parse_size',
    'plan',
    'usage',
]

__version__: str
DEFAULT_WARN: float
"""The default fraction used at which to warn (bytes and inodes)."""
DEFAULT_CRITICAL: float
"""The default fraction used that is critical (bytes and inodes)."""
OWN_PREFIX: str
"""The prefix of diskguard's own files in a checkpoint directory (a save's temp file, the emergency
reserve): the core recognises them by it."""

class DiskGuardError(Exception):
    """Base class of diskguard's own errors."""

class DirectoryBusyError(DiskGuardError):
    """Another process is pruning this checkpoint directory (its lock is held)."""

class InsufficientSpaceError(DiskGuardError):
    """A write was refused before any byte was written: it would not fit.

    ``needed`` is what the write needs (bytes, its staging copy and margin included), ``available``
    what could be written, both in bytes; the message says what was tried to make room.
    """

    needed: int
    available: int
    def __init__(self, message: str, *, needed: int, available: int) -> None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

def _rebuild_insufficient_space(message: str, needed: int, available: int) -> InsufficientSpaceError: ...

@final
class Level:
    """Severity of a check. ``int(level)`` is the Nagios plugin exit code; levels are ordered."""

    OK: ClassVar[Level]
    WARN: ClassVar[Level]
    CRITICAL: ClassVar[Level]
    def __int__(self) -> int: ...
    def __lt__(self, value: object, /) -> bool: ...
    def __le__(self, value: object, /) -> bool: ...
    def __gt__(self, value: object, /) -> bool: ...
    def __ge__(self, value: object, /) -> bool: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Mount:
    """One line of ``/proc/<pid>/mountinfo``, escapes such as ``\\040`` decoded."""

    @property
    def mount_id(self) -> int: ...
    @property
    def parent_id(self) -> int: ...
    @property
    def major(self) -> int:
        """Major device number: ``os.major(os.stat(p).st_dev)`` of files on this mount."""
    @property
    def minor(self) -> int: ...
    @property
    def root(self) -> str:
        """Directory of the filesystem that is this mount's root (not ``/`` for bind mounts)."""
    @property
    def mount_point(self) -> str: ...
    @property
    def fs_type(self) -> str: ...
    @property
    def source(self) -> str:
        """Mount source, usually the device (``/dev/sda1``)."""
    @property
    def mount_options(self) -> str: ...
    @property
    def super_options(self) -> str: ...
    @property
    def read_only(self) -> bool:
        """``ro`` in the mount or superblock options."""
    @property
    def is_overlay(self) -> bool:
        """A union filesystem (overlay, fuse-overlayfs, aufs): in a container, the host's partition."""

@final
class DiskUsage:
    """Usage of the filesystem under a path, in bytes, as ``df -B1`` and ``df -i`` report it.

    The numbers come from one ``statfs`` call. The mount fields (``mount``, ``mount_point``,
    ``device``, and ``fs_type`` when it needs the table) are resolved from the mount table on first
    access, which costs a ``realpath`` and a read of ``/proc/self/mountinfo``.
    """

    @property
    def path(self) -> str:
        """The path asked about (bytes are decoded with the filesystem encoding)."""
    @property
    def queried_path(self) -> str:
        """The path measured: ``path`` itself, or its nearest existing ancestor."""
    @property
    def path_exists(self) -> bool:
        """False when ``path`` does not exist (yet) and ``queried_path`` is an ancestor."""
    @property
    def total(self) -> int:
        """Size of the filesystem (``df`` Size)."""
    @property
    def used(self) -> int:
        """Used bytes (``df`` Used): blocks minus free blocks."""
    @property
    def free(self) -> int:
        """Free bytes including root's reserve."""
    @property
    def avail(self) -> int:
        """Bytes a non-root process can still write (``df`` Avail)."""
    @property
    def reserved(self) -> int:
        """Root's reserve: ``free - avail`` (5% of an ext4 filesystem by default)."""
    @property
    def percent_used(self) -> float:
        """``used / (used + avail) * 100``, unrounded; ``df`` shows it rounded up as Use%."""
    @property
    def inodes_total(self) -> int | None:
        """Inode count; ``None`` where the filesystem has no fixed count (btrfs, many FUSE)."""
    @property
    def inodes_used(self) -> int | None: ...
    @property
    def inodes_free(self) -> int | None: ...
    @property
    def inodes_percent_used(self) -> float | None:
        """``df -i``'s IUse%, unrounded."""
    @property
    def read_only(self) -> bool:
        """The mount is read-only (``ST_RDONLY``)."""
    @property
    def block_size(self) -> int:
        """The unit of the kernel's block counts (``f_frsize``)."""
    @property
    def mount(self) -> Mount | None:
        """The mount holding ``queried_path``, found as ``df`` finds it; ``None`` if unresolvable."""
    @property
    def mount_point(self) -> str | None: ...
    @property
    def fs_type(self) -> str:
        """Filesystem type from the mount table, else a name for the ``statfs`` magic number."""
    @property
    def device(self) -> str | None:
        """Mount source, usually the block device."""
    @property
    def is_overlay(self) -> bool:
        """A union filesystem: inside a container, these are the host partition's numbers."""
    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict (mount fields resolved), for JSON and logging."""

@final
class CheckResult:
    """The outcome of :func:`check`: the level, one reason per threshold reached, and the usage."""

    @property
    def level(self) -> Level: ...
    @property
    def reasons(self) -> list[str]: ...
    @property
    def usage(self) -> DiskUsage: ...

@final
class _Grading:
    """Validated thresholds and a hysteresis (a share of the filesystem): a level is entered at its
    threshold and left only that far past it. ``None`` switches a threshold off; sizes are ints of
    bytes (for diskguard.ops, which parses them). ``flags``: errors name the command line's flags."""

    def __new__(
        cls,
        warn: float | None,
        critical: float | None,
        *,
        warn_free: int | None = None,
        min_free: int | None = None,
        inodes_warning: float | None = None,
        inodes_critical: float | None = None,
        hysteresis: float = 0.0,
        flags: bool = False,
    ) -> _Grading: ...
    def grade(self, usage: DiskUsage, previous: Level | None = None) -> CheckResult:
        """The level of ``usage`` for something that was at ``previous`` (``None``: nothing known)."""
    @staticmethod
    def settle(previous: Level | None, entering: Level, staying: Level) -> Level:
        """The hysteresis rule: rising at once, falling only as far as ``staying`` allows."""

@final
class LogBudget:
    """A log budget by systemd-journald's rule, as :func:`log_budget` returns it."""

    @property
    def total_bytes(self) -> int:
        """Bytes all log files together may occupy."""
    @property
    def max_bytes(self) -> int:
        """Size at which the live file rotates (``maxBytes``)."""
    @property
    def backup_count(self) -> int:
        """Rotated files to keep (``backupCount``), at least 1 so rotation really happens."""
    @property
    def bound(self) -> str:
        """Which limit bound the total: ``'cap'``, ``'fraction'``, ``'keep_free'`` or ``'floor'``."""
    @property
    def explanation(self) -> str:
        """One sentence naming the binding limit and its figures."""
    @property
    def usage(self) -> DiskUsage:
        """The filesystem figures the budget was computed from."""

def log_budget(
    path: _StrPath,
    *,
    max_use: _Size | None = None,
    max_use_fraction: float | None = None,
    keep_free: _Size | None = None,
    max_file_size: _Size | None = None,
    min_file_size: _Size | None = None,
    current_usage: _Size | None = None,
) -> LogBudget:
    """Sizes rotating logs on the filesystem under ``path`` (systemd-journald's rule).

    The total is ``min(max_use, max_use_fraction x size, avail + current_usage - keep_free)``, never
    below two files of ``min_file_size``; each file is ``max_file_size`` or total / 8 (at most
    128 MiB), and ``max_bytes x (backup_count + 1) <= total_bytes``.

    Args:
        path: Where the logs live (a missing path is answered by its nearest existing ancestor).
        max_use: Absolute cap; default 4 GiB.
        max_use_fraction: Cap as a fraction of the filesystem size, in (0, 1]; default 0.10.
        keep_free: Space to leave for everything else; default 15% of the filesystem, at most 4 GiB.
        max_file_size: Size of one file; default total / 8, at most 128 MiB.
        min_file_size: Smallest file worth rotating; default 64 KiB.
        current_usage: Bytes the logs occupy already; they count as available to themselves.

    The GIL is released around ``statfs``.
    """

@final
class TrendEstimate:
    """A forecast from :meth:`TrendMonitor.estimate`. Rates are bytes per second.

    Built by the monitor; the constructor (every field, in order) is what pickling uses.
    """

    def __new__(
        cls,
        rate: float,
        rate_error: float,
        background_rate: float,
        step_rate: float,
        next_save: float,
        avail: float,
        time_to_full: float | None,
        time_to_full_low: float | None,
    ) -> TrendEstimate: ...
    def __reduce__(self) -> tuple[type[TrendEstimate], tuple[Any, ...]]: ...
    @property
    def rate(self) -> float:
        """Total fill rate: background plus tagged steps; negative when shrinking."""
    @property
    def rate_error(self) -> float:
        """Standard error of the background fit."""
    @property
    def background_rate(self) -> float:
        """Drift not caused by tagged writes and frees (logs, caches, other writers)."""
    @property
    def step_rate(self) -> float:
        """Net rate of tagged writes and frees, measured at the same phase of each save cycle."""
    @property
    def next_save(self) -> float:
        """Headroom the next save needs (0 while the last save's prune is still due)."""
    @property
    def avail(self) -> float:
        """Available bytes at the latest sample."""
    @property
    def time_to_full(self) -> float | None:
        """Seconds until full; 0.0 when the next save would not fit; ``None`` when not filling."""
    @property
    def time_to_full_low(self) -> float | None:
        """The same at the rate plus one standard error: the early end, which alarms use."""

@final
class RunForecast:
    """The answer to "will the rest of this run fit?", in training units.

    Built by :func:`forecast_run`; the constructor (every field, in order) is what pickling uses.
    """

    def __new__(
        cls,
        peak_bytes: float,
        peak_at_save: int,
        fits: bool,
        saves_until_full: int | None,
        seconds_until_full: float | None,
        summary: str,
    ) -> RunForecast: ...
    def __reduce__(self) -> tuple[type[RunForecast], tuple[Any, ...]]: ...
    @property
    def peak_bytes(self) -> float:
        """The most the run needs on top of what is used now, at its worst moment."""
    @property
    def peak_at_save(self) -> int:
        """Which save (1-based) reaches the peak; 0 when background growth peaks at the end."""
    @property
    def fits(self) -> bool: ...
    @property
    def saves_until_full(self) -> int | None:
        """The first save that will not fit ("full in ~3 checkpoints")."""
    @property
    def seconds_until_full(self) -> float | None: ...
    @property
    def summary(self) -> str:
        """One sentence, e.g. ``'full in ~3 checkpoints (save 3 of 10, in ~1.5 h): ...'``."""

_TrendState: TypeAlias = dict[str, Any]
_Shape: TypeAlias = Literal['flat', 'burst', 'ramp', 'staircase', 'sawtooth']

@final
class TrendMonitor:
    """Growth rate and time to full from periodic samples, with bounded memory.

    Tag the writes and frees you cause (checkpoint saves, retention) with :meth:`record_write` and
    :meth:`record_free`: the save-then-prune sawtooth then reads as flat, while saves without
    retention read as growth. Times are ``time.monotonic()`` seconds (>= 0); they default to now.
    Numbers must be ints or floats (not bools); byte counts ints.

    Args:
        window: Seconds of history the background rate is fitted over (12 h). Growth counts when
            both halves of the window show it, or when the recent half rises at nearly every sample
            (a writer that just started; another tenant's file landing is a single step).
        capacity: Samples kept at most, 8 to 100 000; faster samples are thinned. Memory grows
            with the samples held, nothing is reserved up front.
        warmup: Seconds of history the long-window forecast waits for (6 h). Before it, the early
            forecast reads the history's :meth:`shape`: a burst (growth confined to a few
            consecutive samples, then flat: a file landing, a few files within minutes) is never a
            rate, however large; a ramp (growth at every sample) is one once it has lasted five
            minutes, whatever the sampling interval, with a t-statistic above Student's t at
            p = 0.001; a staircase (alike steps never given back: untagged saves without
            retention) is one from its second step when ten more would fill the disk, else from
            its third on a schedule, each step counted once it has stood five minutes; a sawtooth
            (steps given back) is not. Tagged saves count from the first prune on, or as a
            staircase. That the next save will not fit is known from the first sample once the
            save pattern is (a prune seen, or two saves).
        fill_significance: Standard errors the fill rate must clear to count as filling (6):
            usage residuals are autocorrelated, so weaker evidence cries wolf on shared disks.

    Pickles (through :meth:`state_dict`, ages measured from now).
    """

    def __new__(
        cls,
        *,
        window: float = 43200.0,
        capacity: int = 720,
        warmup: float = 21600.0,
        fill_significance: float = 6.0,
    ) -> TrendMonitor: ...
    def add_sample(self, used: int, avail: int, t: float | None = None) -> None:
        """Adds a measurement. Raises ``ValueError`` when time goes backwards."""
    def sample(self, path: _StrPath) -> DiskUsage:
        """Measures ``path`` now (GIL released around statfs), adds the sample, returns the usage."""
    def record_write(self, nbytes: int, t: float | None = None) -> None:
        """Tags a checkpoint (or any write we caused) of ``nbytes``."""
    def record_free(self, nbytes: int, t: float | None = None) -> None:
        """Tags ``nbytes`` freed by retention (or any deletion we caused)."""
    def estimate(self) -> TrendEstimate | None:
        """The forecast: the long-window one once warmed up, the early one before (from the third
        sample); ``None`` below three samples."""
    def shape(self) -> _Shape | None:
        """What the history looks like as the early forecast reads it: ``'flat'``, ``'burst'``
        (not a rate), ``'ramp'``, ``'staircase'`` (rates) or ``'sawtooth'`` (not a rate);
        ``None`` below three samples."""
    def time_to_full(self) -> float | None:
        """Seconds until full; 0.0 when the next save cannot fit; ``None`` when not filling."""
    def will_fill_within(self, seconds: float) -> bool:
        """True when :attr:`TrendEstimate.time_to_full_low` is within ``seconds`` (>= 0), or the
        next save cannot fit now."""
    def is_rising_fast(self, growth_threshold: float, window: float = 1800.0) -> bool:
        """The hand-written rule: average growth of ``used`` over the last ``window`` seconds is
        above ``growth_threshold`` bytes per second."""
    def forecast_run(
        self,
        checkpoint_size: _Size,
        save_interval: float,
        *,
        remaining_saves: int | None = None,
        remaining_seconds: float | None = None,
        keep_last: int | None = None,
        existing: int = 0,
        keep_free: _Size | None = None,
    ) -> RunForecast:
        """:func:`forecast_run` with this monitor's latest ``avail`` and background rate (0 until it
        has one). Works from the first sample; before it, ``ValueError``."""
    def state_dict(self, t: float | None = None) -> _TrendState:
        """The monitor as a dict of plain types (str, int, float, bool, list, None: it survives
        ``torch.load(weights_only=True)``): its settings and history, with times stored as ages,
        seconds before ``t`` (not before the latest event). Without ``t``, ages count from now
        or from the latest event when the samples' clock runs ahead (``time.time()`` values): it
        never fails."""
    def load_state_dict(self, state: _TrendState, t: float | None = None) -> None:
        """Becomes the monitor ``state`` describes (settings and history), its ages counted back
        from ``t`` (default now): a job resumed on another host, with another monotonic clock,
        continues its forecast. A corrupt state raises ``TypeError``/``ValueError`` naming the
        field."""
    def __reduce__(self) -> tuple[type[TrendMonitor], tuple[()], _TrendState]: ...
    def __setstate__(self, state: _TrendState) -> None: ...
    def __len__(self) -> int: ...

def forecast_run(
    avail: _Size,
    checkpoint_size: _Size,
    save_interval: float,
    *,
    remaining_saves: int | None = None,
    remaining_seconds: float | None = None,
    keep_last: int | None = None,
    existing: int = 0,
    background_rate: float = 0.0,
    keep_free: _Size | None = None,
) -> RunForecast:
    """Will the rest of a run fit?

    Works out the remaining saves (give ``remaining_saves``, up to 2**32 - 1, or
    ``remaining_seconds``) in closed form, so any count is instant. Frameworks write a new
    checkpoint before deleting the oldest, so with ``keep_last=N`` each save briefly holds N+1.
    ``existing`` checkpoints are on disk now; ``background_rate`` (bytes/s) adds logs and caches.
    Sizes are ints of bytes, floats or strings such as ``'10GiB'``; ``avail`` and
    ``checkpoint_size`` are required (``None`` is refused).
    """

@final
class KeepLast:
    """Keep the newest ``n`` complete checkpoints (``n >= 1``)."""

    def __new__(cls, n: int) -> KeepLast: ...
    @property
    def n(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class KeepBest:
    """Keep the ``k`` best complete checkpoints by ``metric`` (``mode='min'`` for losses).

    Values come from the names (``...-val_loss=0.1234.ckpt``) or from ``values``, a mapping of
    checkpoint name (or path) to value, which wins. Planning fails when no checkpoint's name
    carries ``metric`` and no ``values`` are given (a typo would otherwise keep nothing).
    """

    def __new__(
        cls,
        k: int,
        metric: str,
        mode: Literal['min', 'max'] = 'min',
        values: Mapping[_StrPath, float] | None = None,
    ) -> KeepBest: ...
    @property
    def k(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def mode(self) -> Literal['min', 'max']: ...
    @property
    def values(self) -> dict[str, float] | None:
        """Values by checkpoint name, or ``None``."""
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class KeepEvery:
    """Keep every checkpoint whose step is a multiple of ``steps`` (milestones)."""

    def __new__(cls, steps: int) -> KeepEvery: ...
    @property
    def steps(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class KeepWithin:
    """Keep every checkpoint modified within the last ``seconds`` (finite, > 0)."""

    def __new__(cls, seconds: float) -> KeepWithin: ...
    @property
    def seconds(self) -> float: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class Protect:
    """Never delete these checkpoints (the best, the last, the one resumed from).

    A bare name names an entry of the checkpoint directory. Any other path is resolved as the
    system resolves it (relative to the working directory) and must lie directly in the checkpoint
    directory: :func:`plan` rejects one that lies elsewhere with ``ValueError``.
    """

    def __new__(cls, *paths: _StrPath) -> Protect: ...
    @property
    def paths(self) -> tuple[str, ...]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

_Rule: TypeAlias = KeepLast | KeepBest | KeepEvery | KeepWithin | Protect

@final
class RetentionPolicy:
    """Rules combined as "keep if any rule keeps it".

    Args:
        rules: ``KeepLast``, ``KeepBest``, ``KeepEvery``, ``KeepWithin``, ``Protect``.
        min_partial_age: Seconds a partial save must have been left alone before the plan deletes
            it as a crash leftover (only when older than the newest complete checkpoint, too).
        patterns: Extra file-name globs for single-file checkpoints: one str (``'*.npz'``) or an
            iterable of them. Each needs a character other than ``*``, ``?`` and ``.`` and no ``/``:
            a pattern matching every name would make every file a checkpoint.
    """

    def __new__(
        cls, *rules: _Rule, min_partial_age: float = 3600.0, patterns: str | Iterable[str] = ()
    ) -> RetentionPolicy: ...
    @property
    def rules(self) -> tuple[_Rule, ...]: ...
    @property
    def min_partial_age(self) -> float: ...
    @property
    def patterns(self) -> tuple[str, ...]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class PlanItem:
    """One checkpoint in a :class:`RetentionPlan`."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def action(self) -> Literal['keep', 'delete', 'skip']:
        """``'keep'``, ``'delete'`` or ``'skip'`` (a partial save left alone)."""
    @property
    def reasons(self) -> list[str]: ...
    @property
    def format(self) -> Literal['file', 'huggingface', 'dcp', 'orbax', 'deepspeed', 'accelerate']: ...
    @property
    def step(self) -> int | None: ...
    @property
    def epoch(self) -> int | None: ...
    @property
    def metrics(self) -> list[tuple[str, float]]:
        """``key=value`` pairs parsed from the name, in name order."""
    @property
    def mtime(self) -> float: ...
    @property
    def size(self) -> int:
        """Allocated bytes (``st_blocks``), recursive, hard links counted once."""
    @property
    def apparent_size(self) -> int: ...
    @property
    def complete(self) -> bool: ...
    @property
    def incomplete_reason(self) -> str | None: ...
    @property
    def bytes_freed(self) -> int:
        """Bytes deleting it frees (0 when kept, or hard-linked elsewhere)."""
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class RetentionPlan:
    """Each checkpoint with keep/delete/skip and why; nothing has been touched yet."""

    @property
    def dir(self) -> str: ...
    @property
    def items(self) -> list[PlanItem]:
        """Every checkpoint, oldest to newest."""
    @property
    def bytes_freed(self) -> int: ...
    @property
    def links(self) -> list[tuple[str, str]]:
        """Symlinks as (name, target); never deleted."""
    @property
    def order(self) -> Literal['step', 'time']:
        """The reading that ordered the items: ``'step'``, or ``'time'`` (generations of writes: a
        run restarted in the same directory is newer than the one before)."""
    @property
    def ambiguity(self) -> str | None:
        """When steps and write times disagree and neither reading is clear: both orders, in
        words (then only what both readings delete is deleted); else ``None``."""
    def __len__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

def plan(
    directory: _StrPath,
    policy: RetentionPolicy | None = None,
    *,
    now: float | None = None,
    order: Literal['auto', 'step', 'time'] | None = 'auto',
) -> RetentionPlan:
    """Decide every checkpoint in ``directory``; nothing is touched. The GIL is released.

    With no policy only the invariant applies: the newest complete checkpoint and protected ones
    are kept, everything else complete is planned for deletion. ``now`` (seconds since the epoch,
    default ``time.time()``) must be a finite time. ``order`` says which checkpoint is newer
    where steps and write times disagree: ``'auto'`` reads the directory (a later generation of
    lower steps is a restart, one out-of-place file a copied or touched checkpoint) and, where
    neither reading is clear, reports it in :attr:`RetentionPlan.ambiguity` and deletes only what
    both readings delete; ``'step'`` or ``'time'`` choose.

    Raises:
        TypeError: ``policy`` is not a :class:`RetentionPolicy` (or ``None``).
        ValueError: ``now`` is not a finite time, ``directory`` is ``/``, a ``Protect`` path lies
            outside ``directory``, or a ``KeepBest`` metric appears in no checkpoint's name.
        OSError: ``directory`` cannot be opened (a symlink is refused: ``ELOOP``/``ENOTDIR``).
    """

def apply(plan: RetentionPlan, *, wait: bool = True, timeout: float | None = None) -> list[DeletionOutcome]:
    """Deletes what ``plan`` says, and nothing else.

    The directory must still be the one scanned (a symlink swapped in is refused); each entry is
    re-checked (device, inode) right before ``unlinkat``, never following a symlink; a failed delete
    is reported and the rest go on. An advisory lock keeps two processes from pruning at once:
    ``wait=False`` raises :class:`DirectoryBusyError` (naming the holder's pid when it can) instead
    of waiting, ``timeout`` seconds bounds the wait. The GIL is released.

    Returns:
        A :class:`DeletionOutcome` per planned deletion.
    """

def _free_space(
    directory: _StrPath,
    policy: RetentionPolicy | None,
    target_bytes: int | str | None,
    target_fraction: float | None,
    wait: bool,
    timeout: float | None,
) -> FreeSpaceResult: ...
def _find_orphans(
    dir: _StrPath, temp_dir: _StrPath | None, min_age: float, uid: int, now: float
) -> list[Orphan]: ...
def _remove_orphans(orphans: Iterable[Orphan]) -> list[DeletionOutcome]: ...

_OrphanIdentity: TypeAlias = tuple[int, int, int, int, int, int]

@final
class DeletionOutcome:
    """One attempted deletion (:func:`apply`, :func:`remove_orphans`, :func:`free_space`); it also
    unpacks and indexes as the ``(path, outcome, detail)`` tuple it replaces."""

    def __new__(cls, path: str, outcome: str, detail: str) -> DeletionOutcome: ...
    @property
    def path(self) -> str: ...
    @property
    def outcome(self) -> Literal['deleted', 'skipped', 'failed']: ...
    @property
    def detail(self) -> str:
        """Why it was skipped or failed; empty when deleted."""
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> str: ...
    def __iter__(self) -> Iterator[str]: ...

@final
class Orphan:
    """A leftover of a crashed save (:func:`find_orphans`); equal by path, size, age and reason."""

    def __new__(cls, path: str, size: int, age: float, reason: str, _identity: _OrphanIdentity) -> Orphan: ...
    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int:
        """Bytes."""
    @property
    def age(self) -> float:
        """Seconds since it was last changed."""
    @property
    def reason(self) -> str: ...
    @property
    def _identity(self) -> _OrphanIdentity: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class FreeSpaceResult:
    """What :func:`free_space` achieved. When ``met`` is false, either everything deletable was
    tried (what is left is the newest complete checkpoint, protected ones, partial saves left
    alone, or deletions that failed: see ``outcomes``), or ``shortfall`` says by how many bytes
    deleting every candidate would still miss the target, and nothing was deleted."""

    def __new__(
        cls,
        avail: int,
        target: int,
        met: bool,
        deleted: list[str],
        outcomes: list[DeletionOutcome],
        shortfall: int | None = None,
    ) -> FreeSpaceResult: ...
    @property
    def avail(self) -> int: ...
    @property
    def target(self) -> int: ...
    @property
    def met(self) -> bool: ...
    @property
    def deleted(self) -> list[str]: ...
    @property
    def outcomes(self) -> list[DeletionOutcome]: ...
    @property
    def shortfall(self) -> int | None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class GuardEvent:
    """Something the guard did or saw (internal: :class:`DiskGuard` logs it, and warns when
    ``warning``)."""

    def __new__(cls, kind: str, message: str, warning: bool) -> GuardEvent: ...
    @property
    def kind(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def warning(self) -> bool: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class GuardMetrics:
    """The checkpoint directory's filesystem as of the guard's last check (internal)."""

    def __new__(
        cls, free: int, used_percent: float, seconds_to_full: float | None = None
    ) -> GuardMetrics: ...
    @property
    def free(self) -> int: ...
    @property
    def used_percent(self) -> float: ...
    @property
    def seconds_to_full(self) -> float | None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class GuardState:
    """What ``DiskGuard.state_dict()`` is built from (internal)."""

    def __new__(
        cls,
        level: str,
        largest_checkpoint: int,
        saves: int,
        stop_reason: str | None,
        trend: dict[str, Any],
        own: list[tuple[int, int]],
        run_id: int,
    ) -> GuardState: ...
    @property
    def level(self) -> str: ...
    @property
    def largest_checkpoint(self) -> int: ...
    @property
    def saves(self) -> int: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def trend(self) -> dict[str, Any]: ...
    @property
    def own(self) -> list[tuple[int, int]]: ...
    @property
    def run_id(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

def _shared_filesystem(path: _StrPath) -> bool:
    """Whether the filesystem holding ``path`` is one every node sees (NFS, Lustre, ...), as the
    guard decides who measures it. The GIL is released while the mount table is read."""

def latest_complete(directory: _StrPath, *, patterns: Iterable[str] | None = None) -> str | None:
    """The newest complete checkpoint in ``directory`` to resume from, or ``None``.

    A file or a folder in any layout retention knows (``torch.save`` / Lightning / safetensors
    files, Hugging Face ``checkpoint-N/``, DCP / torchtitan ``step-N/``, Lightning's sharded
    ``epoch=E-step=S.ckpt/`` folders, Accelerate ``checkpoint_N/`` (FSDP's ``pytorch_model_fsdp_0/``
    and ``optimizer_0/`` inside), DeepSpeed ``global_stepN/``, Orbax step folders), ordered as
    retention orders them (by step where the names carry one, by epoch where none carries a step, a
    run restarted in the same directory newer than the one before, by mtime otherwise); ``None``
    also when ``directory`` does not exist yet.
    Never a partial save: a temp name (``*.tmp``, ``tmp-checkpoint-*``, ``.diskguard-*.tmp``), an
    empty or truncated file, or a folder without its commit file is skipped; a DCP folder counts
    only when its ``.metadata`` names files that all exist with their recorded sizes (it is read,
    never unpickled), a DeepSpeed tag only when its ``mp_rank_*`` / ``zero_pp_rank_*`` files are
    complete zips and it is not newer than the tag in its ``latest`` file (which protects the tag
    it names, as a symlink would). Nor is a file that
    is one part of a save: the training state saved beside the weights (``training_args.bin``,
    ``optimizer.pt``, ``scheduler.pt``, ``rng_state_N.pth``), a shard
    (``model-00001-of-00003.safetensors``) beside its ``*.index.json``, or a saved model's weights
    (``model.safetensors``, ``pytorch_model.bin``) beside its ``config.json`` or
    ``training_args.bin``, as ``trainer.save_model()`` leaves them in ``output_dir``; retention
    neither counts nor deletes these. ``patterns`` adds globs for single-file checkpoints beyond the
    built-in extensions (``['*.npz']``); a name a pattern matches is a checkpoint, part or not.
    The GIL is released while the directory is read.

    Raises:
        ValueError: ``directory`` is empty, contains a NUL byte or is ``/``.
        TypeError: ``patterns`` is not a list of strings.
        OSError: ``directory`` cannot be opened (missing, not a directory, a symlink...).
    """

def usage(path: _StrPath) -> DiskUsage:
    """Usage of the filesystem that holds ``path``.

    A path that does not exist yet (a checkpoint directory about to be created) is answered by its
    nearest existing ancestor; ``path_exists`` and ``queried_path`` say so. The GIL is released
    around ``statfs``, which can block on a network filesystem.

    Raises:
        ValueError: ``path`` is empty or contains a NUL byte.
        TypeError: ``path`` is not str, bytes or os.PathLike.
        OSError: The matching subclass with errno and filename (``PermissionError``,
            ``NotADirectoryError`` for a path through a file, ``errno.ENAMETOOLONG``...).
    """

def check(
    path: _StrPath,
    warn: float | None,
    critical: float | None,
    min_free: _Size | None,
    warn_free: _Size | None,
    inode_warn: float | None,
    inode_critical: float | None,
) -> CheckResult:
    """Grade the filesystem under ``path``; ``diskguard.check`` supplies the defaults and adds warning
    and raising options. ``None`` switches a threshold off."""

def mounts(proc_root: _StrPath | None = '/proc', pid: int | str | None = None) -> list[Mount]:
    """The mount table.

    Args:
        proc_root: Where proc is mounted (``None`` also means ``/proc``). A container that mounts the host's
            proc elsewhere (``/host/proc``) passes that path to see the host's filesystems.
        pid: Whose mount namespace to read. ``None`` reads ``self`` under ``/proc``, and under another
            proc root pid 1 (the host's init), falling back to ``self`` when pid 1 is hidden.

    The GIL is released while the file is read.
    """

def parse_size(value: _Size) -> int:
    """Bytes of a human size: ``'20GiB'`` and ``'1.5T'`` are powers of 1024, ``'500MB'`` of 1000.

    Raises:
        ValueError: ``value`` is negative or not a size; the message says what is accepted.
    """

def format_size(value: int) -> str:
    """Bytes with IEC units and one decimal: ``format_size(1536) == '1.5 KiB'``."""

@final
class GuardSpace:
    """One space a :class:`~diskguard.DiskGuard` watches: a filesystem, or the run's budget."""

    @property
    def name(self) -> str:
        """``'checkpoint directory /ckpt'``, ``'temp directory /tmp'``, ``'budget of /ckpt'``..."""
    @property
    def total(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def avail(self) -> int:
        """Bytes available to non-root users (for the budget: budget minus what the run holds)."""
    @property
    def room(self) -> int:
        """Bytes that can be written before ``critical``, ``min_free`` or the budget is reached."""
    @property
    def responsive(self) -> bool:
        """False when its ``statfs`` did not answer in time (the figures are then the last known)."""
    @property
    def level(self) -> str:
        """``'ok'``, ``'warn'`` or ``'critical'``."""
    @property
    def reason(self) -> str | None: ...

@final
class GuardStatus:
    """What ``DiskGuard.status()`` reports; ``str()`` of it is a readable report."""

    @property
    def dir(self) -> str: ...
    @property
    def level(self) -> str: ...
    @property
    def should_stop(self) -> bool: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def spaces(self) -> list[GuardSpace]: ...
    @property
    def held(self) -> int:
        """Bytes the run holds under its directory."""
    @property
    def budget(self) -> int | None: ...
    @property
    def reserve(self) -> int:
        """Room one save needs now."""
    @property
    def largest_checkpoint(self) -> int: ...
    @property
    def saves(self) -> int: ...
    @property
    def retention_deletions(self) -> int: ...
    @property
    def forced_deletions(self) -> int:
        """Checkpoints the rules kept that were deleted to make room."""
    @property
    def checks(self) -> int: ...
    @property
    def emergency_reserve(self) -> tuple[str, int] | None:
        """The emergency reserve file and its size, while it exists."""
    @property
    def report(self) -> str: ...

@final
class _Guard:
    """The guard's decision engine; use :class:`diskguard.DiskGuard`."""

    def __new__(
        cls,
        path: _StrPath,
        options: GuardOptions,
        *,
        temp_dir: _StrPath,
        rank: int,
        local_rank: int,
        world_size: int,
    ) -> _Guard: ...
    def check(self) -> bool: ...
    def check_step(self, measure: bool = False) -> tuple[bool, list[GuardEvent]]: ...
    def before_save(self, path: _StrPath, nbytes: int) -> None: ...
    def after_save(self, path: _StrPath, nbytes: int) -> None: ...
    def rescan(self) -> None: ...
    def take_events(self) -> list[GuardEvent]: ...
    @property
    def should_stop(self) -> bool: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def level(self) -> str: ...
    @property
    def check_every_steps(self) -> int: ...
    @property
    def check_every_seconds(self) -> float: ...
    def status(self) -> GuardStatus: ...
    def forecast(
        self, remaining_saves: int, save_interval: float, checkpoint_size: _Size | None = None
    ) -> RunForecast: ...
    def state(self) -> GuardState: ...
    def load_state(
        self,
        level: str,
        largest: int,
        saves: int,
        stop_reason: str | None,
        trend: dict[str, Any],
        own: Iterable[Iterable[int]] | None = None,
        run_id: int | None = None,
    ) -> None: ...
    @property
    def world_size(self) -> int: ...
    @property
    def deletes(self) -> bool: ...
    def set_referenced(self, paths: Any) -> None: ...
    def metrics(self) -> GuardMetrics | None: ...
    def diagnose(self, errno: int, path: _StrPath | None = None) -> str: ...
    def close(self) -> None: ...

@final
class DuEntry:
    """One entry directly under the scanned directory, with everything beneath it."""

    @property
    def name(self) -> str:
        """Its name (``'(other files)'`` gathers root-level files past the first 10,000)."""
    @property
    def is_dir(self) -> bool: ...
    @property
    def uid(self) -> int:
        """Its owner."""
    @property
    def allocated(self) -> int:
        """Bytes allocated on disk (``st_blocks * 512``), what ``du`` shows."""
    @property
    def apparent(self) -> int:
        """Bytes by length (``st_size``), what ``du --apparent-size`` shows."""
    @property
    def files(self) -> int: ...
    @property
    def dirs(self) -> int: ...

@final
class DuOwner:
    """What one owner (uid) holds under the scanned directory."""

    @property
    def uid(self) -> int: ...
    @property
    def allocated(self) -> int: ...
    @property
    def apparent(self) -> int: ...
    @property
    def files(self) -> int: ...
    @property
    def dirs(self) -> int: ...

@final
class DuReport:
    """What :func:`du` found. Hard links count once, symlinks are not followed."""

    @property
    def root(self) -> str: ...
    @property
    def allocated(self) -> int:
        """Everything under the root, the root included, as ``du -s -B1`` counts."""
    @property
    def apparent(self) -> int: ...
    @property
    def files(self) -> int: ...
    @property
    def dirs(self) -> int: ...
    @property
    def children(self) -> list[DuEntry]:
        """The root's entries, in no particular order."""
    @property
    def owners(self) -> list[DuOwner]:
        """Sums per owner, in no particular order."""
    @property
    def errors(self) -> int:
        """Entries that could not be read (permission denied, vanished, replaced during the scan)."""
    @property
    def error_samples(self) -> list[str]:
        """The first few of those errors, as messages."""
    @property
    def other_filesystems(self) -> int:
        """Directories skipped because they are on another filesystem."""
    @property
    def cancelled(self) -> bool: ...

def du(
    dir: _StrPath,
    *,
    threads: int | None = None,
    one_filesystem: bool = True,
    progress: Any | None = None,
) -> DuReport:
    """Sizes of ``dir``'s tree, per top-level entry and per owner, scanned on worker threads.

    Like ``du -x``: allocated and apparent sizes, hard links once, symlinks never followed, other
    filesystems skipped unless ``one_filesystem=False``; unreadable directories are counted in
    ``errors``, not fatal. ``threads`` defaults to 3 per core (1 to 256). The GIL is released while
    waiting; every 0.1 s Python's signal handlers run (Ctrl-C cancels the scan and raises
    ``KeyboardInterrupt``) and ``progress(entries, allocated_bytes)`` is called if given.

    Raises:
        OSError: ``dir`` cannot be examined or listed.
        ValueError: ``threads`` is out of range, or ``dir`` is empty or holds a NUL byte.
        TypeError: ``threads`` is not an int.
    """
