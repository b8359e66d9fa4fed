"""The records the core returns instead of tuples: each prints, pickles and compares, and reads by
name; the core's InsufficientSpaceError is its own class."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import diskguard
import pytest
from diskguard import DeletionOutcome, FreeSpaceResult, Orphan
from diskguard._diskguard import GuardEvent, GuardMetrics, GuardState

RECORDS: list[tuple[Any, Any, str]] = [
    (
        DeletionOutcome('/ckpt/step=1.pt', 'deleted', ''),
        DeletionOutcome('/ckpt/step=1.pt', 'skipped', 'changed since the plan'),
        "DeletionOutcome(path='/ckpt/step=1.pt', outcome='deleted', detail='')",
    ),
    (
        Orphan('/ckpt/.diskguard-a.tmp', 10, 7200.5, 'a partial save', (1, 2, 3, 4, 5, 6)),
        Orphan('/ckpt/.diskguard-b.tmp', 10, 7200.5, 'a partial save', (1, 2, 3, 4, 5, 6)),
        "Orphan(path='/ckpt/.diskguard-a.tmp', size=10, age=7200.5, reason='a partial save')",
    ),
    (
        FreeSpaceResult(5, 8, False, [], [], 3),
        FreeSpaceResult(5, 8, False, [], [], None),
        'FreeSpaceResult(avail=5, target=8, met=False, deleted=[], outcomes=[], shortfall=3)',
    ),
    (
        GuardEvent('stop', 'the run stops', True),
        GuardEvent('stop', 'the run stops', False),
        "GuardEvent(kind='stop', message='the run stops', warning=True)",
    ),
    (
        GuardMetrics(1024, 51.5, None),
        GuardMetrics(1024, 51.5, 3600.0),
        'GuardMetrics(free=1024, used_percent=51.5, seconds_to_full=None)',
    ),
    (
        GuardState('ok', 10, 2, None, {'samples': [1.0]}, [(1, 2)], 7),
        GuardState('ok', 10, 2, None, {'samples': [2.0]}, [(1, 2)], 7),
        (
            "GuardState(level='ok', largest_checkpoint=10, saves=2, stop_reason=None, "
            "trend={'samples': [1.0]}, own=[(1, 2)], run_id=7)"
        ),
    ),
]


@pytest.mark.parametrize(('record', 'other', 'text'), RECORDS, ids=lambda r: type(r).__name__)
def test_each_record_prints_pickles_and_compares(record: Any, other: Any, text: str) -> None:
    assert repr(record) == text
    back = pickle.loads(pickle.dumps(record))
    assert type(back) is type(record)
    assert back == record
    assert record != other
    assert record != tuple(text)  # never equal to something else


@pytest.mark.parametrize(
    'record', [r for r, _, _ in RECORDS[:2]] + [RECORDS[3][0]], ids=lambda r: type(r).__name__
)
def test_records_that_replaced_hashable_values_hash(record: Any) -> None:
    assert len({record, pickle.loads(pickle.dumps(record))}) == 1


def test_an_orphans_identity_survives_pickling_but_is_not_compared() -> None:
    orphan = Orphan('/ckpt/x.tmp', 1, 2.0, 'why', (1, 2, 3, 4, 5, 6))
    assert pickle.loads(pickle.dumps(orphan))._identity == (1, 2, 3, 4, 5, 6)
    assert orphan == Orphan('/ckpt/x.tmp', 1, 2.0, 'why', (9, 9, 9, 9, 9, 9))


def test_a_deletion_outcome_still_unpacks_as_the_tuple_it_replaces() -> None:
    outcome = DeletionOutcome('/ckpt/a.pt', 'failed', 'EACCES')
    path, what, detail = outcome
    assert (path, what, detail) == ('/ckpt/a.pt', 'failed', 'EACCES')
    assert (outcome[0], outcome[1], outcome[-1], len(outcome)) == ('/ckpt/a.pt', 'failed', 'EACCES', 3)
    with pytest.raises(IndexError):
        outcome[3]


def test_apply_and_orphans_return_records(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        (tmp_path / f'step={step}.pt').write_bytes(b'x' * 100)
        os.utime(tmp_path / f'step={step}.pt', (time.time() - 7200, time.time() - 7200))
    (tmp_path / '.diskguard-step=4.pt.abc.tmp').write_bytes(b'y')
    os.utime(tmp_path / '.diskguard-step=4.pt.abc.tmp', (time.time() - 7200, time.time() - 7200))
    results = diskguard.apply(diskguard.plan(tmp_path, diskguard.RetentionPolicy(diskguard.KeepLast(1))))
    assert sorted(Path(r.path).name for r in results) == ['step=1.pt', 'step=2.pt']
    assert all(isinstance(r, DeletionOutcome) and r.outcome == 'deleted' for r in results)
    [orphan] = diskguard.find_orphans(tmp_path, include_temp_dir=False)
    assert isinstance(orphan, Orphan) and orphan.size > 0 and orphan.age > 3000
    [removed] = diskguard.remove_orphans([orphan])
    assert removed == DeletionOutcome(orphan.path, 'deleted', '')


def test_the_guard_reads_its_engine_by_name(tmp_path: Path) -> None:
    guard = diskguard.DiskGuard(tmp_path)
    engine = guard._engine
    assert isinstance(engine.state(), GuardState) and engine.state().level == 'ok'
    metrics = engine.metrics()
    assert isinstance(metrics, GuardMetrics) and metrics.free > 0
    assert guard.metrics()['disk/used_percent'] == metrics.used_percent


def test_insufficient_space_error_is_the_cores_own_class() -> None:
    from diskguard import errors

    assert errors.InsufficientSpaceError is diskguard._diskguard.InsufficientSpaceError
    assert issubclass(diskguard.InsufficientSpaceError, diskguard.DiskGuardError)
    assert diskguard.InsufficientSpaceError.__module__ == 'diskguard'
    err = diskguard.InsufficientSpaceError('no room', needed=10, available=3)
    assert (str(err), err.args, err.needed, err.available) == ('no room', ('no room',), 10, 3)
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.needed, back.available) == (type(err), 'no room', 10, 3)
    with pytest.raises(TypeError, match='needed'):
        diskguard.InsufficientSpaceError('no room')  # type: ignore[call-arg]


def test_a_refusal_raises_insufficient_space_without_importing_python(tmp_path: Path) -> None:
    # The refusal must not depend on importing diskguard.errors when it is raised (it did: with
    # that import failing, it came out as a plain DiskGuardError without needed/available).
    code = (
        'import sys, diskguard\n'
        'sys.modules["diskguard.errors"] = None\n'
        f'guard = diskguard.DiskGuard({str(tmp_path)!r}, budget=4096, warn=None, critical=None)\n'
        'try:\n'
        f'    guard.before_save({str(tmp_path / "step=1.pt")!r}, 10**9)\n'
        'except diskguard.InsufficientSpaceError as err:\n'
        '    print(type(err).__name__, err.needed >= 10**9, err.available < 10**9)\n'
    )
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
    assert done.stdout.split() == ['InsufficientSpaceError', 'True', 'True'], done.stderr
