"""Hostile arguments to the usage, check, mounts, size and log-budget API: every bad value gets a
TypeError or ValueError naming the argument, never a panic, a hang or a silent guess."""

from __future__ import annotations

import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import diskguard
import pytest
from diskguard import DEFAULT_CRITICAL, DEFAULT_WARN, Level
from hypothesis import given, settings
from hypothesis import strategies as st

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**64, 2**64 - 1, 2**63, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.sampled_from([object(), {'a': 1}, (1, 2), b'/dev/zero', '/dev/zero', 1j]),
)

SOMEWHERE = Path(tempfile.gettempdir())  # only measured, never written
FRACTIONS = ['warn', 'critical', 'inode_warn', 'inode_critical']
SIZES = ['min_free', 'warn_free']


def _accepted_or_named(call: Any, name: str, value: Any) -> None:
    try:
        call()
    except (TypeError, ValueError) as err:
        assert f'{name}=' in str(err), f'{name}={value!r}: the error does not name it: {err}'
        assert 'expected' in str(err) or 'must' in str(err), str(err)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(FRACTIONS + SIZES), value=HOSTILE)
def test_check_arguments_are_accepted_or_rejected_by_name(name: str, value: Any) -> None:
    kwargs: dict[str, Any] = {name: value}
    if name in ('warn', 'inode_warn'):
        kwargs[name.replace('warn', 'critical')] = None  # judge the value alone, not its order
    if name in ('critical', 'inode_critical'):
        kwargs[name.replace('critical', 'warn')] = None
    _accepted_or_named(lambda: diskguard.check(SOMEWHERE, **kwargs), name, value)


@pytest.mark.parametrize('name', FRACTIONS)
@pytest.mark.parametrize('value', [True, False, math.nan, math.inf, -0.5, 0, 1.5, '0.9', [0.9]])
def test_fractions_refuse_nonsense(tmp_path: Path, name: str, value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match=f'{name}='):
        diskguard.check(tmp_path, **{name: value, 'warn' if 'critical' in name else 'critical': None})


@pytest.mark.parametrize(
    'value', [True, 0.1, 0.5, -1, math.nan, math.inf, 2**64, '0.5', '1.5B', '', 'x', [1]]
)
def test_sizes_refuse_nonsense(tmp_path: Path, value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match='min_free='):
        diskguard.check(tmp_path, min_free=value)


def test_sizes_that_mean_bytes_are_accepted() -> None:
    assert diskguard.parse_size(1e9) == 10**9
    assert diskguard.parse_size('1.5K') == 1536
    assert diskguard.parse_size(2**64 - 1) == 2**64 - 1
    with pytest.raises(ValueError, match=r'value=0\.1: expected a non-negative byte count'):
        diskguard.parse_size(0.1)


@pytest.mark.parametrize('value', [-1, 2**64, True, 1.5, '10', None])
def test_format_size_refuses_what_is_not_a_byte_count(value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match='value='):
        diskguard.format_size(value)


def test_defaults_come_from_the_core(tmp_path: Path) -> None:
    assert (DEFAULT_WARN, DEFAULT_CRITICAL) == (0.85, 0.95)
    explicit = diskguard.check(tmp_path, DEFAULT_WARN, DEFAULT_CRITICAL)
    assert diskguard.check(tmp_path).level == explicit.level


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(['max_use', 'max_use_fraction', 'keep_free', 'max_file_size', 'min_file_size']),
    value=HOSTILE,
)
def test_log_budget_arguments(name: str, value: Any) -> None:
    _accepted_or_named(lambda: diskguard.log_budget(SOMEWHERE, **{name: value}), name, value)


def test_log_file_larger_than_the_disk_is_refused(tmpfs: Path) -> None:
    with pytest.raises(
        ValueError, match=r'max_file_size=1152921504606846976: larger than the whole filesystem'
    ):
        diskguard.log_budget(tmpfs, max_file_size='1EiB')
    with pytest.raises(ValueError, match='max_file_size=1024: must be at least min_file_size=65536'):
        diskguard.log_budget(tmpfs, max_file_size=1024)


@pytest.mark.parametrize('pid', [True, -1, 2**64, 1.0, [1], 'x', ''])
def test_mounts_pid_refuses_nonsense(pid: Any) -> None:
    with pytest.raises((TypeError, ValueError), match='pid='):
        diskguard.mounts(pid=pid)


@pytest.mark.parametrize('proc_root', [5, True, ['/proc'], object()])
def test_mounts_proc_root_names_itself(proc_root: Any) -> None:
    with pytest.raises(TypeError, match=r'^proc_root=.*expected a path \(str, bytes or os.PathLike\)'):
        diskguard.mounts(proc_root)


def test_mounts_refuses_a_fifo_and_dev_zero_without_blocking(tmp_path: Path) -> None:
    fifo_root = tmp_path / 'fifo'
    (fifo_root / 'self').mkdir(parents=True)
    os.mkfifo(fifo_root / 'self' / 'mountinfo')
    with pytest.raises(ValueError, match='proc_root=.*regular file'):
        diskguard.mounts(fifo_root, 'self')
    zero_root = tmp_path / 'zero'
    (zero_root / '1').mkdir(parents=True)
    os.symlink('/dev/zero', zero_root / '1' / 'mountinfo')
    with pytest.raises(ValueError, match='proc_root=.*regular file'):
        diskguard.mounts(zero_root, 1)


def test_mounts_refuses_a_huge_table(tmp_path: Path) -> None:
    (tmp_path / 'self').mkdir()
    with open(tmp_path / 'self' / 'mountinfo', 'wb') as f:
        f.truncate(65 << 20)  # sparse: 65 MiB of zeros read back, no disk used
    with pytest.raises(ValueError, match='larger than 67108864 bytes'):
        diskguard.mounts(tmp_path, 'self')


def _roundtrip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


def test_records_pickle(tmpfs: Path) -> None:
    u = diskguard.usage(tmpfs / 'not-yet')
    assert u.mount_point == str(tmpfs)  # resolve the mount: it travels with the record
    back = _roundtrip(u)
    assert back.to_dict() == u.to_dict()
    assert repr(back) == repr(u)
    fresh = _roundtrip(diskguard.usage(tmpfs))  # unresolved: resolved where it lands
    assert fresh.mount_point == str(tmpfs) and fresh.fs_type == 'tmpfs'

    (tmpfs / 'data').write_bytes(b'x' * 65536)
    result = diskguard.check(tmpfs, warn=0.0001, critical=None)
    again = _roundtrip(result)
    assert (again.level, again.reasons, str(again)) == (Level.WARN, result.reasons, str(result))
    assert again.usage.to_dict() == result.usage.to_dict()

    for level in Level.OK, Level.WARN, Level.CRITICAL:
        assert _roundtrip(level) is level

    mount = next(m for m in diskguard.mounts() if m.mount_point == str(tmpfs))
    copy = _roundtrip(mount)
    keys = ['mount_id', 'parent_id', 'major', 'minor', 'root', 'mount_point', 'fs_type', 'source']
    keys += ['mount_options', 'super_options', 'read_only', 'is_overlay']
    assert [getattr(copy, k) for k in keys] == [getattr(mount, k) for k in keys]

    budget = diskguard.log_budget(tmpfs)
    copied = _roundtrip(budget)
    assert (copied.total_bytes, copied.max_bytes, copied.backup_count, copied.bound, copied.explanation) == (
        budget.total_bytes,
        budget.max_bytes,
        budget.backup_count,
        budget.bound,
        budget.explanation,
    )


def test_errors_pickle(tmpfs: Path) -> None:
    (tmpfs / 'data').write_bytes(b'x' * 65536)
    critical = diskguard.check(tmpfs, warn=None, critical=0.0001)
    err = _roundtrip(diskguard.DiskSpaceCriticalError(critical))
    assert isinstance(err, diskguard.DiskGuardError) and err.result.level == Level.CRITICAL
    assert str(err) == str(critical)
    short = _roundtrip(diskguard.InsufficientSpaceError('no room', needed=10, available=3))
    assert (str(short), short.needed, short.available) == ('no room', 10, 3)
    base = _roundtrip(diskguard.DiskGuardError('x'))
    assert type(base) is diskguard.DiskGuardError and str(base) == 'x'
