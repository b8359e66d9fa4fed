"""DiskGuard in a distributed run: one measurer per filesystem, one deleter per directory, the stop
agreed by every rank at the same step (unit tests in one process, and a real 2-process gloo run
under torchrun)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import diskguard
import pytest
from conftest import fill_until_enospc, mounted_tmpfs

ROOT = Path(__file__).resolve().parent.parent


def _guard(path: Path, **kwargs: object) -> diskguard.DiskGuard:
    if 'world_size' in kwargs:
        kwargs = {'rank': 0, 'local_rank': 0, **kwargs}  # rank 0 of a run of world_size
    return diskguard.DiskGuard(path, check_every_seconds=3600, **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def _no_warnings() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        yield
    assert [str(w.message) for w in record] == []


def _checkpoint(path: Path, nbytes: int = 1 << 20) -> Path:
    path.write_bytes(b'\1' * nbytes)
    return path


def test_a_rank_that_does_not_measure_never_deletes_or_warns(tmpfs: Path) -> None:
    """Rank 1 on the same node (local rank 1): the node-local tmpfs is local rank 0's to measure."""
    for i in range(4):
        _checkpoint(tmpfs / f'step={i}.pt', 2 << 20)
    fill_until_enospc(tmpfs)
    before = sorted(os.listdir(tmpfs))
    other = _guard(
        tmpfs,
        rank=1,
        local_rank=1,
        world_size=2,
        sync=None,
        retention=diskguard.RetentionPolicy(diskguard.KeepLast(1)),
    )
    with _no_warnings():
        assert other.step(0) is False
    assert other.deletes is False
    assert other.metrics() == {}
    assert sorted(os.listdir(tmpfs)) == before
    owner = _guard(
        tmpfs,
        rank=0,
        local_rank=0,
        world_size=2,
        sync=None,
        retention=diskguard.RetentionPolicy(diskguard.KeepLast(1)),
    )
    assert owner.deletes is True
    with pytest.warns(diskguard.DiskSpaceWarning):
        owner.step(0)
    assert sorted(os.listdir(tmpfs)) != before  # the owner made room


def test_local_rank_zero_of_another_node_measures_its_local_disk(tmpfs: Path) -> None:
    guard = _guard(tmpfs, rank=3, local_rank=0, world_size=4, sync=None)
    assert guard.deletes is True
    assert set(guard.metrics()) >= {'disk/free_bytes', 'disk/used_percent'}


def test_ranks_come_from_torchrun_environment(tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('RANK', '1')
    monkeypatch.setenv('LOCAL_RANK', '1')
    monkeypatch.setenv('WORLD_SIZE', '2')
    assert _guard(tmpfs, sync=None).deletes is False
    monkeypatch.setenv('LOCAL_RANK', '0')
    assert _guard(tmpfs, sync=None).deletes is True
    monkeypatch.setenv('RANK', 'one')
    with pytest.raises(ValueError, match=r"RANK='one'"):
        _guard(tmpfs)


@pytest.mark.parametrize(
    ('kwargs', 'error', 'match'),
    [
        ({'rank': True}, TypeError, r'rank=True: expected a whole number'),
        ({'rank': 2, 'world_size': 2}, ValueError, r'rank=2: expected a rank below world_size=2'),
        ({'local_rank': 5, 'world_size': 2}, ValueError, r'local_rank=5'),
        ({'world_size': 0}, ValueError, r'world_size=0: expected at least 1'),
        ({'rank': -1}, ValueError, r'rank=-1'),
        ({'world_size': 2**64}, ValueError, r'world_size=18446744073709551616'),
        ({'rank': 1.0}, TypeError, r'rank=1.0'),
        ({'sync': 'always'}, TypeError, r"sync='always': expected 'auto', None or a callable"),
        ({'sync': 3}, TypeError, r'sync=3'),
    ],
)
def test_bad_ranks_and_sync_are_refused_by_name(
    tmp_path: Path, kwargs: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        _guard(tmp_path, **kwargs)


def test_the_flag_is_reduced_every_check_every_steps_calls_and_sticks(tmpfs: Path) -> None:
    """Every rank returns the agreed flag, changed only at a reduction, on the same call."""
    calls: list[bool] = []
    others_say = [False, False, True, False]

    def reduce(local: bool) -> bool:
        calls.append(local)
        return local or others_say[len(calls) - 1]

    guard = _guard(tmpfs, rank=0, world_size=2, sync=reduce, check_every_steps=4)
    results = [guard.step() for _ in range(16)]
    assert calls == [False, False, False, False]  # at calls 4, 8, 12, 16; this rank never short
    assert results[:11] == [False] * 11
    assert results[11:] == [True] * 5  # agreed at call 12, and it sticks
    assert guard.should_stop is True
    assert guard.stop_reason is None  # this rank had no reason of its own


def test_sync_stop_reduces_now(tmpfs: Path) -> None:
    seen: list[bool] = []
    guard = _guard(tmpfs, world_size=2, sync=lambda flag: seen.append(flag) or True)
    assert guard.sync_stop() is True
    assert seen == [False]
    single = _guard(tmpfs)
    assert single.sync_stop() is False  # a single process only checks


def test_a_reduction_returning_nonsense_is_refused(tmpfs: Path) -> None:
    guard = _guard(tmpfs, world_size=2, sync=lambda flag: 'yes', check_every_steps=1)
    with pytest.raises(TypeError, match=r"sync returned 'yes'"):
        guard.step()


def test_protected_checkpoints_survive_retention_and_making_room(tmpfs: Path) -> None:
    for i in range(1, 5):
        _checkpoint(tmpfs / f'step={i}.pt')
    guard = _guard(tmpfs, retention=diskguard.RetentionPolicy(diskguard.KeepLast(1)))
    guard.protect([tmpfs / 'step=1.pt', '/etc/passwd', tmpfs / 'step=2.pt' / 'inside'])
    guard.before_save(tmpfs / 'step=5.pt', 1 << 20)
    _checkpoint(tmpfs / 'step=5.pt')
    guard.after_save(tmpfs / 'step=5.pt', 1 << 20)
    assert sorted(os.listdir(tmpfs)) == ['step=1.pt', 'step=2.pt', 'step=5.pt']
    fill_until_enospc(tmpfs)
    with pytest.warns(diskguard.DiskSpaceWarning):
        guard.check()
    assert {'step=1.pt', 'step=2.pt', 'step=5.pt'} <= set(os.listdir(tmpfs))
    guard.protect([])
    guard.check()  # no longer referenced: retention takes them
    assert not {'step=1.pt', 'step=2.pt'} & set(os.listdir(tmpfs))


@pytest.mark.parametrize('bad', ['step=1.pt', b'x', 5, None, ['a\0b']])
def test_protect_wants_a_list_of_paths(tmp_path: Path, bad: object) -> None:
    guard = _guard(tmp_path)
    with pytest.raises((TypeError, ValueError), match=r'paths='):
        guard.protect(bad)  # type: ignore[arg-type]


def test_diagnosis_names_the_filesystem_what_the_run_holds_and_what_to_change(tmpfs: Path) -> None:
    _checkpoint(tmpfs / 'step=1.pt')
    guard = _guard(tmpfs)
    try:
        try:
            fill_until_enospc(tmpfs)
            with open(tmpfs / 'step=2.pt', 'wb') as f:
                f.write(b'\0' * (1 << 20))
        except OSError as err:
            raise RuntimeError('the framework wraps it') from err
    except RuntimeError as wrapped:
        text = guard.diagnose(wrapped)
    assert text is not None
    assert text.startswith('no space left on device (ENOSPC)\n')  # write() names no file
    assert f'tmpfs mounted at {tmpfs}' in text
    assert 'checkpoint directory' in text
    assert '1 complete checkpoint' in text
    assert 'change: keep fewer checkpoints' in text
    named = guard.diagnose(OSError(errno.ENOSPC, 'No space left', str(tmpfs / 'step=2.pt')))
    assert named is not None and named.startswith(
        f'no space left on device (ENOSPC) writing {tmpfs}/step=2.pt'
    )
    assert guard.diagnose(ValueError('x')) is None
    assert guard.diagnose(OSError(errno.EACCES, 'denied')) is None
    quota = guard.diagnose(OSError(errno.EDQUOT, 'Disk quota exceeded'))
    assert quota is not None and 'quota' in quota and 'budget=' in quota
    with pytest.raises(TypeError, match=r'error='):
        guard.diagnose('ENOSPC')  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


@pytest.mark.torch
@pytest.mark.timeout(240)
def test_torchrun_ranks_stop_at_the_same_step_with_one_deleter(tmpfs: Path) -> None:
    pytest.importorskip('torch')
    checkpoints = tmpfs / 'ckpts'
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2',
        '--master-addr', '127.0.0.1', '--master-port', str(_free_port()),
        str(ROOT / 'examples' / 'torchrun_loop.py'), str(checkpoints),
        '--steps', '400', '--save-every', '10', '--fill-at', '42',
    ]  # fmt: skip
    env = {**os.environ, 'PYTHONPATH': str(ROOT / 'tests'), 'OMP_NUM_THREADS': '1'}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=200, env=env, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    stops = dict(re.findall(r'rank (\d): stopped at step (\d+)', out.stdout))
    deleters = re.findall(r'rank \d: stopped at step \d+ deletes=True', out.stdout)
    assert set(stops) == {'0', '1'}, out.stdout
    assert stops['0'] == stops['1'], out.stdout
    assert 42 < int(stops['0']) < 400
    assert len(deleters) == 1 and deleters[0].startswith('rank 0'), out.stdout
    names = os.listdir(checkpoints)
    assert not [n for n in names if n.endswith('.tmp')]  # no partial save left
    latest = diskguard.latest_complete(checkpoints)
    assert latest is not None
    import torch

    assert set(torch.load(latest, weights_only=True)) == {'weight', 'bias'}


def test_diagnosis_points_at_a_full_temp_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's fsspec stages whole checkpoints in $TMPDIR: the advice says so."""
    with mounted_tmpfs(tmp_path / 'tmp') as tmp:
        monkeypatch.setattr(tempfile, 'tempdir', str(tmp))
        guard = _guard(tmp_path / 'checkpoints')
        text = guard.diagnose(OSError(errno.ENOSPC, 'No space left', str(tmp / 'tmpk2j3h4')))
    assert text is not None
    assert f'temp directory {tmp}' in text
    assert 'point TMPDIR at a larger filesystem' in text
    assert 'keep fewer checkpoints' not in text


def _sync_calls(guard: diskguard.DiskGuard, calls: int) -> list[int]:
    """The step() call numbers at which ``guard`` reduced (its sync records them)."""
    done: list[int] = []
    for i in range(1, calls + 1):
        with contextlib.suppress(diskguard.DiskSpaceWarning):
            guard.step()
        done.extend([i] * (len(_SEEN) - len(done)))
    return done


_SEEN: list[bool] = []


def _recording_sync(flag: bool) -> bool:
    _SEEN.append(flag)
    return flag


def test_a_warning_turned_into_an_error_does_not_skip_the_collective(tmpfs: Path) -> None:
    """Only the measuring rank warns; under -W error it must still join every reduction."""
    fill_until_enospc(tmpfs)
    _SEEN.clear()
    measuring = _guard(tmpfs, world_size=2, sync=_recording_sync, check_every_steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter('error', diskguard.DiskSpaceWarning)
        assert _sync_calls(measuring, 16) == [4, 8, 12, 16]
    assert measuring.should_stop is True
    _SEEN.clear()
    other = _guard(tmpfs, rank=1, local_rank=1, world_size=2, sync=_recording_sync, check_every_steps=4)
    assert _sync_calls(other, 16) == [4, 8, 12, 16]


def test_unpickled_guards_reduce_on_the_same_calls_however_they_are_touched(tmp_path: Path) -> None:
    import pickle

    guard = _guard(tmp_path, world_size=2, sync=_recording_sync, check_every_steps=5)
    for _ in range(3):
        guard.step()
    blob = pickle.dumps(guard)
    schedules = []
    for touch_first in (False, True):
        copy = pickle.loads(blob)
        if touch_first:
            assert copy.deletes is True  # builds the engine before the first step()
        _SEEN.clear()
        schedules.append(_sync_calls(copy, 12))
        assert copy.state_dict()['calls'] == 15  # the pickled 3 and these 12
    assert schedules[0] == schedules[1] == [2, 7, 12]  # calls 5, 10, 15 of the run


def test_sync_results_with_one_truth_value_are_accepted(tmp_path: Path) -> None:
    class NumpyLikeBool:
        def __bool__(self) -> bool:
            return True

    guard = _guard(tmp_path, world_size=2, sync=lambda flag: NumpyLikeBool(), check_every_steps=1)
    assert guard.step() is True
    refuses = _guard(tmp_path, world_size=2, sync=lambda flag: None, check_every_steps=1)
    with pytest.raises(TypeError, match=r'sync returned None'):
        refuses.step()


def test_a_guard_with_an_unpicklable_sync_says_so(tmp_path: Path) -> None:
    import pickle

    guard = _guard(tmp_path, world_size=2, sync=lambda flag: flag)
    with pytest.raises(TypeError, match=r'sync=<function .*<lambda>.* cannot be pickled'):
        pickle.dumps(guard)
    assert pickle.loads(pickle.dumps(_guard(tmp_path, world_size=2, sync=_recording_sync))).deletes


@pytest.mark.parametrize(
    ('env', 'match'),
    [
        ({'WORLD_SIZE': '2', 'LOCAL_RANK': '1'}, r'rank: WORLD_SIZE=2 but RANK is not set'),
        ({'WORLD_SIZE': '2', 'RANK': '1'}, r'local_rank: WORLD_SIZE=2 but LOCAL_RANK is not set'),
        ({'LOCAL_RANK': '1'}, r'world_size: .*LOCAL_RANK=1 without WORLD_SIZE'),
    ],
)
def test_a_launcher_that_set_only_some_ranks_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], match: str
) -> None:
    for name in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=match):
        _guard(tmp_path)


def test_auto_sync_without_a_process_group_is_an_error_not_a_lone_stop(tmp_path: Path) -> None:
    guard = _guard(tmp_path, rank=0, local_rank=0, world_size=2, check_every_steps=1)
    with pytest.raises(RuntimeError, match=r"sync='auto'.*not initialized"):
        guard.step()


def test_protect_sees_through_a_symlinked_directory_and_takes_bare_names(tmpfs: Path) -> None:
    """The guard's path goes through a symlinked parent (a symlinked /scratch); Lightning names
    its checkpoints by realpath."""
    real = tmpfs / 'real' / 'ckpts'
    real.mkdir(parents=True)
    (tmpfs / 'link').symlink_to(tmpfs / 'real')
    for i in range(1, 5):
        _checkpoint(real / f'step={i}.pt')
    seen = tmpfs / 'link' / 'ckpts'
    guard = _guard(seen, retention=diskguard.RetentionPolicy(diskguard.KeepLast(1)))
    guard.protect([real / 'step=1.pt', 'step=2.pt'])
    guard.before_save(seen / 'step=5.pt', 1 << 20)
    _checkpoint(real / 'step=5.pt')
    guard.after_save(seen / 'step=5.pt', 1 << 20)
    assert sorted(os.listdir(real)) == ['step=1.pt', 'step=2.pt', 'step=5.pt']


def test_diagnosis_names_inode_exhaustion(tmpfs: Path) -> None:
    guard = _guard(tmpfs)
    made = 0
    with contextlib.suppress(OSError):
        for made in range(1000):
            (tmpfs / f'f{made}').touch()
    assert made < 999
    text = guard.diagnose(OSError(errno.ENOSPC, 'No space left on device', str(tmpfs / 'new')))
    assert text is not None
    assert 'no free inodes: all 64 are used' in text
