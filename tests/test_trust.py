"""What diskguard trusts (issue 16): a run never loses its own checkpoints to files it did not write,
and never deletes for nothing. Each test is one case of the issue, on a real tmpfs with real
``torch.save`` checkpoints; the shared-directory cases run as unprivileged users (processes that
drop to their uid for good) in a sticky 1777 directory."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import diskguard
import pytest
from conftest import mounted_tmpfs
from diskguard import DiskGuard, DiskSpaceWarning, KeepLast, RetentionPolicy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip('torch')

KiB, MiB = 1024, 1024 * 1024
RUN_USER, OTHER_USER = 65534, 65533


def tensor_state(nbytes: int, value: float = 0.0) -> dict[str, object]:
    return {'w': torch.full((nbytes // 4,), value)}


def save_old(path: Path, nbytes: int = 64 * KiB, age: float = 3600.0) -> Path:
    """A complete torch.save checkpoint written `age` seconds ago (an earlier run's)."""
    torch.save(tensor_state(nbytes), path)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def checkpoints(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if not n.startswith('.'))


def caught(call: object, *args: object) -> list[str]:
    """Runs ``call`` and returns the DiskSpaceWarning messages it issued."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter('always')
        call(*args)  # type: ignore[operator]
    return [str(w.message) for w in got if issubclass(w.category, DiskSpaceWarning)]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / 'disk', size='32m', nr_inodes=4096) as where:
        yield where


@pytest.fixture
def shared() -> Iterator[Path]:
    """A sticky, world-writable directory on its own tmpfs (a shared /scratch), at a path other
    users can reach (pytest's own temp directories are private to root)."""
    base = Path(tempfile.mkdtemp(prefix='diskguard-shared-'))
    os.chmod(base, 0o755)
    try:
        with mounted_tmpfs(base / 'scratch', size='32m', nr_inodes=4096) as where:
            os.chmod(base / 'scratch', 0o1777)
            yield where
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ----- 1. a higher step from somewhere else -----


def test_a_restart_in_the_same_directory_keeps_the_new_runs_saves(disk: Path) -> None:
    save_old(disk / 'step=5000.pt')
    guard = DiskGuard(disk, retention=RetentionPolicy(KeepLast(1)), warn=None, critical=None)
    warned = []
    for step in (100, 200, 300):
        warned += caught(guard.save, tensor_state(64 * KiB, step), disk / f'step={step}.pt')
    assert checkpoints(disk) == ['step=300.pt'], 'the earlier run goes first, the new run keeps its last'
    assert diskguard.latest_complete(disk) == str(disk / 'step=300.pt')
    foreign = [m for m in warned if 'step=5000.pt' in m and 'higher step' in m]
    assert len(foreign) == 1, warned


def test_prune_reads_a_restart_and_exits_3_when_it_cannot_tell(disk: Path) -> None:
    save_old(disk / 'step=5000.pt', age=4000)
    for age, step in ((30, 100), (20, 200), (10, 300)):
        save_old(disk / f'step={step}.pt', age=age)
    cli = [sys.executable, '-m', 'diskguard', 'prune', str(disk), '--keep-last', '1']
    done = subprocess.run(cli, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert checkpoints(disk) == ['step=300.pt'], done.stdout

    # One new low step after higher ones: a restart, or an old checkpoint copied? Not guessed.
    for age, step in ((400, 1000), (300, 2000)):
        save_old(disk / f'step={step}.pt', age=age)
    os.utime(disk / 'step=300.pt')  # touched now: newest by time, oldest by step
    unclear = subprocess.run(cli, capture_output=True, text=True, check=False)
    assert unclear.returncode == 3, unclear
    assert 'by step: step=2000.pt' in unclear.stderr and 'by time' in unclear.stderr, unclear.stderr
    assert checkpoints(disk) == ['step=1000.pt', 'step=2000.pt', 'step=300.pt'], 'nothing deleted'
    p = diskguard.plan(disk, RetentionPolicy(KeepLast(1)))
    assert p.ambiguity is not None and {i.action for i in p.items} == {'keep', 'delete'}
    assert {str(i.name) for i in p.items if i.action == 'keep'} == {'step=2000.pt', 'step=300.pt'}
    by_step = subprocess.run([*cli, '--order', 'step'], capture_output=True, text=True, check=False)
    assert by_step.returncode == 0 and checkpoints(disk) == ['step=2000.pt'], by_step


def _drop_to(uid: int) -> str:
    """Code that becomes `uid` for good, once torch has loaded what a save needs (its install is
    under root's home, which other users cannot read)."""
    return (
        'import io, os, torch, diskguard.saving; torch.save({"w": torch.zeros(1)}, io.BytesIO()); '
        f'os.setgroups([]); os.setresgid({uid}, {uid}, {uid}); os.setresuid({uid}, {uid}, {uid})'
    )


def plant_as(uid: int, path: Path, step_value: float = 0.0) -> None:
    """Another user writes a valid torch.save zip at `path` (torch is imported before dropping)."""
    code = (
        f'import torch; {_drop_to(uid)}; assert os.geteuid() == {uid}; '
        f'torch.save({{"w": torch.full((256,), {step_value})}}, {str(path)!r})'
    )
    subprocess.run([sys.executable, '-c', code], check=True, capture_output=True)


RUN = r"""
import os, sys, warnings
import torch, diskguard
{drop}
directory, keep = sys.argv[1], int(sys.argv[2])
warnings.showwarning = lambda message, *a, **k: print('WARN', message, flush=True)
warnings.simplefilter('always')
guard = diskguard.DiskGuard(directory, retention=diskguard.RetentionPolicy(diskguard.KeepLast(keep)),
                            warn=None, critical=None)
print('ready', flush=True)
for line in sys.stdin:
    step = int(line)
    guard.save({{'w': torch.full((4096,), float(step))}}, os.path.join(directory, f'step={{step}}.pt'))
    print('saved', step, sorted(n for n in os.listdir(directory) if n.endswith('.pt')), flush=True)
"""


class Run:
    """A training run in its own process, as `uid`, saving the steps it is told to (no sleeps:
    each command waits for the run's answer)."""

    def __init__(self, uid: int, directory: Path, keep: int) -> None:
        code = RUN.format(drop=_drop_to(uid))
        self.proc = subprocess.Popen(
            [sys.executable, '-c', code, str(directory), str(keep)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.warnings: list[str] = []
        self._until('ready')

    def _until(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith('WARN'):
                self.warnings.append(line[5:].strip())
            elif line.startswith(prefix):
                return line
        raise AssertionError(f'the run ended early: {self.proc.wait()}')

    def save(self, step: int) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f'{step}\n')
        self.proc.stdin.flush()
        return self._until('saved')

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.warnings += [line[5:].strip() for line in self.proc.stdout if line.startswith('WARN')]
        self.proc.stdout.close()
        assert self.proc.wait(timeout=60) == 0


def test_a_planted_higher_step_never_outranks_the_runs_saves(shared: Path) -> None:
    plant_as(OTHER_USER, shared / 'step=5000.pt')
    run = Run(RUN_USER, shared, keep=1)
    try:
        for step in (100, 200):
            run.save(step)
        plant_as(OTHER_USER, shared / 'step=9000.pt')  # planted while the run goes on
        run.save(300)
    finally:
        run.close()
    assert checkpoints(shared) == ['step=300.pt', 'step=5000.pt', 'step=9000.pt']
    assert not any('could not delete' in w for w in run.warnings), run.warnings
    # Named once each, as not the run's.
    assert sum('step=5000.pt' in w for w in run.warnings) == 1, run.warnings
    assert sum('step=9000.pt' in w for w in run.warnings) == 1, run.warnings


# ----- 2. two runs, one directory -----


def test_two_live_runs_in_one_directory_never_delete_each_others_checkpoints(shared: Path) -> None:
    a = Run(RUN_USER, shared, keep=3)
    b = Run(RUN_USER, shared, keep=1)
    try:
        for step in (1, 2, 3, 4):
            a.save(100 * step)
            b.save(1000 * step)
    finally:
        a.close()
        b.close()
    assert set(checkpoints(shared)) == {'step=200.pt', 'step=300.pt', 'step=400.pt', 'step=4000.pt'}
    for run in (a, b):
        told = [w for w in run.warnings if 'another live run guards' in w]
        assert len(told) == 1, run.warnings


def test_a_held_directory_lock_is_said_once_and_retention_retried(disk: Path) -> None:
    guard = DiskGuard(disk, retention=RetentionPolicy(KeepLast(1)), warn=None, critical=None)
    holder = subprocess.Popen(
        [
            sys.executable,
            '-c',
            (
                'import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); '
                'fcntl.flock(fd, fcntl.LOCK_EX); print("held", flush=True); sys.stdin.read()'
            ),
            str(disk),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == 'held\n'
    warned = []
    for step in (1, 2, 3):
        warned += caught(guard.save, tensor_state(16 * KiB), disk / f'step={step}.pt')
    assert len(checkpoints(disk)) == 3
    assert len([m for m in warned if 'retried at the next check' in m]) == 1, warned
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)
    holder.stdout.close()
    caught(guard.check)
    assert checkpoints(disk) == ['step=3.pt'], 'retried once the lock was free'


# ----- 3. hard links count once -----


def test_hard_links_are_counted_once_in_what_the_run_holds(disk: Path) -> None:
    (disk / 'data.bin').write_bytes(os.urandom(150 * KiB))
    for i in range(19):
        os.link(disk / 'data.bin', disk / f'data-{i}.bin')
    guard = DiskGuard(disk, budget='3MiB', retention=RetentionPolicy(KeepLast(3)), warn=None, critical=None)
    warned = []
    for step in range(1, 5):
        warned += caught(guard.save, tensor_state(200 * KiB), disk / f'step={step}.pt')
    assert guard.status().held < MiB + 512 * KiB, guard.status()
    assert [n for n in checkpoints(disk) if n.endswith('.pt')] == ['step=2.pt', 'step=3.pt', 'step=4.pt']
    assert not guard.should_stop and guard.status().forced_deletions == 0, warned


# ----- 4. deleting for nothing -----


def test_free_space_deletes_nothing_when_no_deletion_reaches_the_target(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / 'small', size='8m', nr_inodes=64) as small:
        for step in range(6):
            save_old(small / f'step={step}.pt', nbytes=MiB, age=100 - step)
        result = diskguard.free_space(small, RetentionPolicy(KeepLast(1)), target_fraction=1.0)
        assert not result.met and result.deleted == [] and result.outcomes == []
        assert result.shortfall is not None and result.shortfall > 0
        assert len(checkpoints(small)) == 6


def test_making_room_deletes_nothing_that_cannot_make_enough(
    disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for step in (1, 2, 3):
        save_old(disk / f'step={step}.pt', nbytes=MiB, age=100 - step)
    # Four checkpoints' room is needed (two saves of a 2 MiB estimate); deleting two frees two.
    guard = DiskGuard(disk, budget='4MiB', reserve='2MiB', warn=None, critical=None)
    caplog.set_level(logging.INFO, logger='diskguard.guard')
    caught(guard.check)
    assert checkpoints(disk) == ['step=1.pt', 'step=2.pt', 'step=3.pt']
    assert guard.should_stop
    assert any('deleting nothing' in r.getMessage() for r in caplog.records)


# ----- 5. write before delete -----


def test_the_final_save_never_costs_the_last_complete_checkpoint(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / 'twenty', size='20m', nr_inodes=64) as disk:
        (disk / 'other-job.bin').write_bytes(os.urandom(6 * MiB))
        ckpt = disk / 'checkpoints'
        ckpt.mkdir()
        guard = DiskGuard(ckpt, check_every_steps=1)
        state = tensor_state(6 * MiB - 16 * KiB)
        assert any('stopping the run' in m for m in caught(guard.save, state, ckpt / 'checkpoint_epoch_0.pt'))
        assert guard.step(0) and guard.should_stop
        caught(guard.save, state, ckpt / 'checkpoint_epoch_0_final.pt')  # as the README's loop does
        assert checkpoints(ckpt) == ['checkpoint_epoch_0.pt', 'checkpoint_epoch_0_final.pt']
        # No room for a larger one even with the older one gone: refused, nothing deleted for it.
        with pytest.raises(diskguard.InsufficientSpaceError):
            caught(guard.save, tensor_state(9 * MiB), ckpt / 'checkpoint_epoch_1.pt')
        assert checkpoints(ckpt) == ['checkpoint_epoch_0.pt', 'checkpoint_epoch_0_final.pt']
        del guard


# ----- 6. epoch numbers are an order -----


def test_epoch_numbers_order_checkpoints_without_a_step(disk: Path) -> None:
    for epoch in (2, 5, 11):
        save_old(disk / f'checkpoint_epoch_{epoch}.pt', age=100 - epoch)
    os.utime(disk / 'checkpoint_epoch_2.pt')  # touched: newest by time only
    assert diskguard.latest_complete(disk) == str(disk / 'checkpoint_epoch_11.pt')
    p = diskguard.plan(disk, RetentionPolicy(KeepLast(1)))
    assert {str(i.name): i.action for i in p.items}['checkpoint_epoch_11.pt'] == 'keep'
    assert [i.epoch for i in p.items] == [2, 5, 11]
    other = disk / 'other'
    other.mkdir()
    for name, age in (('epoch=5.pt', 30), ('model_epoch_3.pth', 10), ('epoch=12.pt', 20)):
        save_old(other / name, age=age)
    assert diskguard.latest_complete(other) == str(other / 'epoch=12.pt')


# ----- 7. missing directories -----


def test_a_directory_not_created_yet(disk: Path) -> None:
    assert diskguard.latest_complete(disk / 'checkpoints') is None
    guard = DiskGuard(disk / 'fresh_run', retention=RetentionPolicy(KeepLast(2)))
    guard.save(tensor_state(16 * KiB), disk / 'fresh_run' / 'step=1.pt')
    assert checkpoints(disk / 'fresh_run') == ['step=1.pt']
    with pytest.raises(FileNotFoundError):  # only the guarded directory is created
        guard.save(tensor_state(16 * KiB), disk / 'fresh_run' / 'sub' / 'step=2.pt')
    assert not (disk / 'fresh_run' / 'sub').exists()


# ----- 8. degradation said once -----


def test_degradation_is_said_once_and_each_deletion_is_logged(
    disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger='diskguard.guard')
    guard = DiskGuard(
        disk, budget='1600KiB', retention=RetentionPolicy(KeepLast(3)), warn=None, critical=None
    )
    warned = []
    for step in range(1, 9):
        try:
            warned += caught(guard.save, tensor_state(300 * KiB), disk / f'step={step}.pt')
        except diskguard.InsufficientSpaceError:
            break
    deletions = [r for r in caplog.records if 'to make room' in r.getMessage()]
    assert len(deletions) >= 2, caplog.text
    degraded = [m for m in warned if 'no longer keep what its rules ask' in m]
    assert len(degraded) == 1 and "on_full='stop'" in degraded[0], warned
    assert not [m for m in warned if m.startswith('deleted')]


# ----- the run's identity survives a restart -----


def test_a_resumed_run_keeps_knowing_its_own_checkpoints(disk: Path) -> None:
    first = DiskGuard(disk, retention=RetentionPolicy(KeepLast(2)), warn=None, critical=None)
    for step in (100, 200):
        caught(first.save, {'guard': first.state_dict()}, disk / f'step={step}.pt')
    first.close()
    del first
    # A file with a higher step appears between the runs (another job's, copied in).
    save_old(disk / 'step=900.pt', age=1)
    resumed = DiskGuard(disk, retention=RetentionPolicy(KeepLast(2)), warn=None, critical=None)
    state = torch.load(disk / 'step=200.pt', weights_only=True)['guard']
    assert len(state['own']) == 1, 'the state names the run checkpoints written before it'
    resumed.load_state_dict(state)
    caught(resumed.save, {'guard': resumed.state_dict()}, disk / 'step=300.pt')
    assert checkpoints(disk) == ['step=200.pt', 'step=300.pt'], 'the run lineage outranks step=900'


# ----- 9. residue of the hostile-input sweep -----


def test_residue_arguments_are_named_or_right(disk: Path) -> None:
    from diskguard.logging import RotatingFileHandler

    policy = RetentionPolicy(KeepLast(1), patterns='*.npz')
    assert policy.patterns == ('*.npz',), 'a plain string is one pattern'
    save_old(disk / 'step=1.pt')
    p = diskguard.plan(disk, policy)
    with pytest.raises(TypeError, match=r'wait=None: expected True'):
        diskguard.apply(p, wait=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r'p=None: expected a RetentionPlan'):
        diskguard.format_plan(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"orphans=\['x'\]: expected a list of Orphan"):
        diskguard.remove_orphans(['x'])  # type: ignore[list-item]
    for bad, kind in ((-1, ValueError), (float('nan'), ValueError), ('x', TypeError), (True, TypeError)):
        with pytest.raises(kind, match='resize_interval=.*expected a finite number of seconds >= 0'):
            RotatingFileHandler.from_budget(disk / 'train.log', resize_interval=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order='newest'"):
        diskguard.plan(disk, policy, order='newest')  # type: ignore[arg-type]


def test_a_planted_reserve_file_name_is_skipped(disk: Path) -> None:
    code = (
        'import os, sys, diskguard; d = sys.argv[1]; '
        'open(os.path.join(d, f".diskguard-reserve-{os.getpid()}-0"), "x").close(); '
        'g = diskguard.DiskGuard(d, emergency_reserve="1MiB"); '
        'print(os.path.basename(g.status().emergency_reserve[0])); g.close()'
    )
    done = subprocess.run(
        [sys.executable, '-c', code, str(disk)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith('-1'), done.stdout


def test_recovery_is_said_once_too(disk: Path) -> None:
    filler = disk / 'events.log'  # a log eating the budget, as TensorBoard's event files do
    filler.write_bytes(os.urandom(700 * KiB))
    guard = DiskGuard(
        disk,
        budget='2MiB',
        retention=RetentionPolicy(KeepLast(3)),
        warn=None,
        critical=None,
        rescan_interval=0.001,
    )
    warned = []
    for step in range(1, 5):
        warned += caught(guard.save, tensor_state(250 * KiB), disk / f'step={step}.pt')
    assert len([m for m in warned if 'no longer keep what its rules ask' in m]) == 1, warned
    filler.unlink()  # the log is rotated away: the budget holds the last three again
    later = []
    for step in range(5, 10):
        later += caught(guard.save, tensor_state(250 * KiB), disk / f'step={step}.pt')
    assert len([m for m in later if 'keeps what its rules ask again' in m]) == 1, later
    assert [n for n in checkpoints(disk) if n.endswith('.pt')] == ['step=7.pt', 'step=8.pt', 'step=9.pt']
    assert not guard.should_stop


# ----- adversarial review (trust2) -----


def test_an_inode_retention_freed_never_makes_a_planted_file_the_runs(tmp_path: Path) -> None:
    """ext4 hands a freed inode to the next file created: another user's file that takes the inode
    of a save retention deleted must not count as one of the run's, nor outrank its saves."""
    run = tmp_path / 'run'  # on the test machine's ext4 (tmpfs never reuses an inode number)
    run.mkdir()
    guard = DiskGuard(run, retention=RetentionPolicy(KeepLast(2)), warn=None, critical=None)
    for step in (100, 200):
        caught(guard.save, tensor_state(16 * KiB, step), run / f'step={step}.pt')
    freed = os.stat(run / 'step=100.pt').st_ino
    caught(guard.save, tensor_state(16 * KiB, 300), run / 'step=300.pt')
    assert checkpoints(run) == ['step=200.pt', 'step=300.pt']
    content = (run / 'step=300.pt').read_bytes()  # a complete checkpoint (torch.save's zip)
    for attempt in range(2000):  # what an attacker does: create files until one has the inode
        candidate = run / f'.plant-{attempt}'
        candidate.write_bytes(content)
        if os.stat(candidate).st_ino == freed:
            break
    else:
        pytest.fail(f'inode {freed} was not reused on {run} (the attack this test needs)')
    planted = run / 'step=9000.pt'
    os.rename(candidate, planted)
    os.chown(planted, OTHER_USER, OTHER_USER)
    caught(guard.save, tensor_state(16 * KiB, 400), run / 'step=400.pt')
    guard.close()
    assert checkpoints(run) == ['step=300.pt', 'step=400.pt', 'step=9000.pt'], 'the run keeps its last 2'


def test_a_save_never_follows_the_guarded_directory_replaced_by_a_symlink(tmp_path: Path) -> None:
    """The guard refuses a symlink for its directory when made; one put there since (the directory
    did not exist yet, or was moved away) must not carry its saves out of it."""
    run, elsewhere = tmp_path / 'run', tmp_path / 'elsewhere'
    elsewhere.mkdir()
    guard = DiskGuard(run, warn=None, critical=None)
    run.symlink_to(elsewhere)
    with pytest.raises(OSError, match='symlink') as raised:
        guard.save(tensor_state(4 * KiB), run / 'step=1.pt')
    assert raised.value.filename == str(run)
    assert os.listdir(elsewhere) == [], 'nothing written through the symlink'
    run.unlink()
    guard.save(tensor_state(4 * KiB), run / 'step=1.pt')  # the directory itself is still created
    assert checkpoints(run) == ['step=1.pt']
    guard.close()


NAME_FORMS = ('step={}.pt', 'epoch=1-step={}.ckpt', 'epoch={}.pt', 'checkpoint_epoch_{}.pt', 'model.pt')


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        # (name form, number, write time in minutes from now)
        st.tuples(st.sampled_from(NAME_FORMS), st.integers(0, 30), st.integers(-5, 40)),
        min_size=1,
        max_size=8,
        unique_by=lambda spec: spec[0].format(spec[1]),
    )
)
def test_resume_and_retention_agree_on_the_newest_whatever_the_steps_and_times(
    tmp_path_factory: pytest.TempPathFactory, specs: list[tuple[str, int, int]]
) -> None:
    """Steps and epochs in any names and write times in any order (restarts, touched copies, mtimes
    in the future, ties): the checkpoint a resume picks is one ``KeepLast(1)`` keeps, ambiguity
    included."""
    directory = tmp_path_factory.mktemp('orders')
    content = _complete_checkpoint_bytes()
    now = time.time()
    for form, number, minutes in specs:
        path = directory / form.format(number)
        path.write_bytes(content)
        os.utime(path, (now + 60 * minutes, now + 60 * minutes))
    latest = diskguard.latest_complete(directory)
    plan = diskguard.plan(directory, RetentionPolicy(KeepLast(1)))
    kept = {str(i.name) for i in plan.items if i.action == 'keep'}
    assert latest is not None and os.path.basename(latest) in kept, (latest, plan)


_content: list[bytes] = []


def _complete_checkpoint_bytes() -> bytes:
    if not _content:
        buffer = io.BytesIO()
        torch.save(tensor_state(4 * KiB), buffer)
        _content.append(buffer.getvalue())
    return _content[0]


RESUMED = r"""
import sys, warnings
import torch, diskguard
warnings.showwarning = lambda message, *a, **k: print('WARN', message, flush=True)
warnings.simplefilter('always')
directory, state = sys.argv[1], sys.argv[2]
guard = diskguard.DiskGuard(directory, retention=diskguard.RetentionPolicy(diskguard.KeepLast(1)),
                            warn=None, critical=None)
guard.load_state_dict(torch.load(state, weights_only=True))
guard.save({'w': torch.zeros(16)}, directory + '/step=300.pt')
guard.close()
"""


def test_a_run_resumed_while_the_run_it_resumed_from_lives_is_another_live_run(tmp_path: Path) -> None:
    """A requeued job whose first instance still runs, or a second run started from the same
    checkpoint: the state carries the run's id, but a resumed run is a live run of its own, so the
    two are told of each other (an unpickled copy alone is the same run), and the resumed run, with
    ``KeepLast(1)``, deletes none of the checkpoints it took over while the other run lives."""
    run = tmp_path / 'run'
    run.mkdir()
    first = DiskGuard(run, retention=RetentionPolicy(KeepLast(3)), warn=None, critical=None)
    for step in (100, 200):
        caught(first.save, tensor_state(4 * KiB), run / f'step={step}.pt')
    torch.save(first.state_dict(), tmp_path / 'state.pt')
    resumed = subprocess.run(
        [sys.executable, '-c', RESUMED, str(run), str(tmp_path / 'state.pt')],
        capture_output=True,
        text=True,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert 'another live run guards' in resumed.stdout, resumed.stdout
    assert checkpoints(run) == ['step=100.pt', 'step=200.pt', 'step=300.pt'], 'the live run keeps its saves'
    first.close()


def test_making_room_measures_first_so_room_freed_since_the_last_rescan_costs_nothing(disk: Path) -> None:
    """A log rotated away between two periodic rescans: the guard's figure of what the run holds
    still counts it, but making room measures before it deletes, and deletes nothing once the
    budget holds the next save."""
    filler = disk / 'events.log'
    filler.write_bytes(os.urandom(700 * KiB))
    guard = DiskGuard(
        disk,
        budget='2MiB',
        retention=RetentionPolicy(KeepLast(3)),
        warn=None,
        critical=None,
        rescan_interval=3600,
    )
    for step in range(1, 5):
        caught(guard.save, tensor_state(250 * KiB), disk / f'step={step}.pt')
    forced = guard.status().forced_deletions
    filler.unlink()
    for step in range(5, 8):
        caught(guard.save, tensor_state(250 * KiB), disk / f'step={step}.pt')
    assert guard.status().forced_deletions == forced, 'no kept checkpoint deleted for room already there'
    assert [n for n in checkpoints(disk) if n.endswith('.pt')][-3:] == ['step=5.pt', 'step=6.pt', 'step=7.pt']
