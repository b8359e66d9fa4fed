"""diskguard.check(): thresholds graded on a real filled tmpfs, and every bad threshold refused clearly."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import diskguard
import pytest
from diskguard import DiskGuardError, DiskSpaceCriticalError, DiskSpaceWarning, Level
from hypothesis import given, settings
from hypothesis import strategies as st


def fill(where: Path, fraction: float) -> None:
    """Fills a tmpfs (which reserves nothing) to `fraction` of its size."""
    total = diskguard.usage(where).total
    (where / 'data').write_bytes(b'\0' * int(total * fraction))


def test_levels_follow_df_percent_on_a_real_disk(tmpfs: Path) -> None:
    assert diskguard.check(tmpfs).level == Level.OK
    fill(tmpfs, 0.90)
    result = diskguard.check(tmpfs)
    assert result.level == Level.WARN
    assert result.reasons == [f'{result.usage.percent_used:.1f}% used >= warn 85%']
    assert str(result).startswith(f'WARN {tmpfs}: ')
    fill(tmpfs, 0.97)
    result = diskguard.check(tmpfs, warn=0.85, critical=0.95)
    assert result.level == Level.CRITICAL and int(result.level) == 2


def test_absolute_free_space_floor_accepts_human_sizes(tmpfs: Path) -> None:
    fill(tmpfs, 0.5)  # about 8 MiB left
    assert diskguard.check(tmpfs, min_free='4MiB').level == Level.OK
    critical = diskguard.check(tmpfs, min_free='10MiB')
    assert critical.level == Level.CRITICAL
    assert critical.reasons[0].endswith('available < min_free 10.0 MiB')
    assert diskguard.check(tmpfs, warn_free='10MB', min_free=1024).level == Level.WARN
    assert diskguard.check(tmpfs, min_free=10 * 2**20).level == Level.CRITICAL
    assert diskguard.check(tmpfs, min_free=float(10 * 2**20)).level == Level.CRITICAL


def test_switching_thresholds_off(tmpfs: Path) -> None:
    fill(tmpfs, 0.97)
    off = diskguard.check(tmpfs, warn=None, critical=None, inode_warn=None, inode_critical=None)
    assert off.level == Level.OK and off.reasons == []


def test_opt_in_warning_and_exception(tmpfs: Path) -> None:
    fill(tmpfs, 0.90)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        diskguard.check(tmpfs)  # no warning unless asked for
    with pytest.warns(DiskSpaceWarning, match='used >= warn 85%'):
        diskguard.check(tmpfs, emit_warning=True)
    assert diskguard.check(tmpfs, raise_on_critical=True).level == Level.WARN
    fill(tmpfs, 0.97)
    with pytest.raises(DiskSpaceCriticalError) as raised:
        diskguard.check(tmpfs, raise_on_critical=True)
    assert isinstance(raised.value, DiskGuardError)
    assert raised.value.result.level == Level.CRITICAL
    assert issubclass(DiskSpaceWarning, UserWarning)


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'warn': 1.5}, 'warn=1.5: expected a fraction in (0, 1]'),
        ({'warn': 0.0}, 'warn=0: expected a fraction in (0, 1]'),
        ({'critical': -0.5}, 'critical=-0.5: expected a fraction in (0, 1]'),
        ({'critical': math.nan}, 'critical=NaN: expected a fraction in (0, 1]'),
        ({'warn': math.inf}, 'warn=inf: expected a fraction in (0, 1]'),
        ({'warn': 0.96, 'critical': 0.95}, 'warn=0.96: must not exceed critical=0.95'),
        ({'inode_warn': 2}, 'inode_warn=2: expected a fraction'),
        ({'inode_warn': 0.9, 'inode_critical': 0.8}, 'inode_warn=0.9: must not exceed inode_critical=0.8'),
        ({'min_free': -1}, 'min_free=-1: expected a non-negative byte count'),
        ({'min_free': '-5GiB'}, "min_free='-5GiB': expected a non-negative byte count"),
        ({'min_free': '20 parsecs'}, "min_free='20 parsecs': expected"),
        ({'min_free': 'nan'}, "min_free='nan': expected"),
        ({'min_free': math.inf}, 'min_free=inf: expected'),
        ({'min_free': True}, 'min_free=True: expected'),
        ({'min_free': [1]}, 'min_free=[1]: expected'),
        (
            {'warn_free': '1GiB', 'min_free': '2GiB'},
            'warn_free=1073741824: must be at least min_free=2147483648',
        ),
    ],
)
def test_bad_thresholds_name_argument_value_and_rule(kwargs, message) -> None:
    with pytest.raises(ValueError) as raised:
        diskguard.check('/', **kwargs)
    assert str(raised.value).startswith(message), str(raised.value)


def test_type_errors_for_non_numbers() -> None:
    with pytest.raises(TypeError, match='warn'):
        diskguard.check('/', warn='high')  # type: ignore[arg-type]


def test_parse_and_format_size() -> None:
    assert diskguard.parse_size('20GiB') == 20 * 2**30
    assert diskguard.parse_size('500MB') == 500_000_000
    assert diskguard.parse_size('1.5T') == 1_649_267_441_664
    assert diskguard.parse_size(4096) == 4096
    assert diskguard.format_size(1536) == '1.5 KiB'
    with pytest.raises(ValueError, match="value='lots'"):
        diskguard.parse_size('lots')


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.binary(max_size=40), st.integers(), st.floats()))
def test_no_size_input_reaches_python_as_a_panic(value) -> None:
    try:
        result = diskguard.parse_size(value)
    except (ValueError, TypeError, OverflowError):
        return
    assert isinstance(result, int) and result >= 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_no_path_reaches_python_as_a_panic(raw: bytes) -> None:
    base = os.fsencode(os.getcwd())
    for path in (raw, base + b'/' + raw):
        try:
            u = diskguard.usage(path)
        except (ValueError, OSError):
            continue
        assert u.used <= u.total and 0.0 <= u.percent_used <= 100.0
        assert u.mount_point is None or isinstance(u.mount_point, str)
