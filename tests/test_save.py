"""diskguard.save and latest_complete with real torch on real, small filesystems.

The control first: a plain ``torch.save`` loop on a tmpfs sized for a few checkpoints dies and leaves
a truncated file. Then ``diskguard.save`` on the same kind of disk: refuses before writing, never
leaves a temp file when the disk or a quota fills mid-write, and what it wrote loads.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskguard
import pytest
from conftest import NOBODY, QUOTA_LIMIT, as_user, mounted_tmpfs
from diskguard import DiskFullError, InsufficientSpaceError
from diskguard.saving import estimate_size

# CI runs these on the interpreter that has torch (the test extra) and deselects them elsewhere
# with -m 'not torch', where the import below must not break collection.
pytestmark = pytest.mark.torch
torch = pytest.importorskip('torch', reason='the save tests need torch: pip install -e .[test]')

MiB = 1024 * 1024
CHECKPOINT_FLOATS = 750_000  # 3.0 MB of float32: a 10 MiB disk holds three


def state(seed: int, floats: int = CHECKPOINT_FLOATS) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(seed)
    return {'step': seed, 'w': torch.randn(floats, generator=generator)}


def loads_as(path: Path, seed: int) -> bool:
    loaded = torch.load(path, weights_only=True)
    return loaded['step'] == seed and torch.equal(loaded['w'], state(seed, loaded['w'].numel())['w'])


def leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith('.diskguard-'))


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 10 MiB tmpfs: room for three 3 MB checkpoints, not four."""
    with mounted_tmpfs(tmp_path / 'disk', size='10m', nr_inodes=64) as where:
        yield where


class RecordingGuard:
    """The two methods save() calls on a guard, recording what it saw when."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.calls: list[tuple[Any, ...]] = []

    def before_save(self, path: str, nbytes: int) -> None:
        self.calls.append(('before', path, nbytes, sorted(os.listdir(os.path.dirname(path)))))
        if self.refuse:
            raise InsufficientSpaceError('the guard found no room', needed=nbytes, available=0)

    def after_save(self, path: str, nbytes: int) -> None:
        self.calls.append(('after', path, nbytes, os.path.getsize(path), leftovers(Path(path).parent)))


class FillsTheDisk:
    """Pickles as an empty dict, and while being pickled lets another file take the disk's room:
    the write that follows runs out of space midway."""

    def __init__(self, directory: Path, leave: int = 64 * 1024) -> None:
        self.directory, self.leave = directory, leave

    def __reduce__(self) -> tuple[Any, ...]:
        room = diskguard.usage(self.directory).avail - self.leave
        (self.directory / 'other-job.bin').write_bytes(b'\0' * room)
        return (dict, ())


class Raises:
    """Fails while being pickled, as a tensor subclass whose serialisation raises would."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.pickled = False

    def __reduce__(self) -> tuple[Any, ...]:
        self.pickled = True
        raise self.error


def test_control_plain_torch_save_loop_dies_and_leaves_a_truncated_file(disk: Path) -> None:
    saved = []
    with pytest.raises(RuntimeError) as caught:
        for step in range(10):
            torch.save(state(step), disk / f'step={step}.pt')
            saved.append(step)
    assert len(saved) == 3, 'three fit, the fourth does not'
    assert not any(isinstance(e, OSError) for e in (caught.value.__cause__, caught.value.__context__)), (
        'torch.save to a path carries no errno: catching OSError misses it'
    )
    truncated = disk / 'step=3.pt'
    assert 0 < truncated.stat().st_size < (disk / 'step=2.pt').stat().st_size
    with pytest.raises(RuntimeError, match='central directory'):
        torch.load(truncated, weights_only=True)
    assert diskguard.latest_complete(disk) == str(disk / 'step=2.pt'), 'resume skips the truncated one'


def test_save_loop_refuses_before_writing_and_earlier_checkpoints_load(disk: Path) -> None:
    saved = []
    with pytest.raises(InsufficientSpaceError) as caught:
        for step in range(10):
            before = sorted(os.listdir(disk))
            diskguard.save(state(step), disk / f'step={step}.pt')
            saved.append(step)
    assert saved == [0, 1, 2]
    assert sorted(os.listdir(disk)) == before, 'nothing new on disk, not even a temp file'
    err = caught.value
    assert isinstance(err, diskguard.DiskGuardError)
    assert err.available == diskguard.usage(disk).avail < err.needed
    assert err.needed >= 4 * CHECKPOINT_FLOATS
    assert 'nothing was written' in str(err) and 'step=3.pt' in str(err)
    assert all(loads_as(disk / f'step={step}.pt', step) for step in saved)
    assert diskguard.latest_complete(disk) == str(disk / 'step=2.pt')


def test_round_trip_and_torch_save_options_pass_through(tmp_path: Path) -> None:
    obj = {'model': torch.nn.Linear(8, 4).state_dict(), 'note': 'hello', 'nested': [torch.arange(5)]}
    diskguard.save(obj, tmp_path / 'a.pt')
    loaded = torch.load(tmp_path / 'a.pt', weights_only=True)
    assert loaded['note'] == 'hello' and torch.equal(loaded['nested'][0], torch.arange(5))
    assert all(torch.equal(loaded['model'][k], v) for k, v in obj['model'].items())
    diskguard.save(obj, str(tmp_path / 'legacy.pt'), _use_new_zipfile_serialization=False)
    with open(tmp_path / 'legacy.pt', 'rb') as f:
        assert f.read(2) != b'PK', 'the legacy (non-zip) format was asked for and written'
    assert torch.equal(torch.load(tmp_path / 'legacy.pt', weights_only=True)['nested'][0], torch.arange(5))
    diskguard.save(obj, tmp_path / 'p4.pt', pickle_protocol=4)
    with zipfile.ZipFile(tmp_path / 'p4.pt') as archive:
        pickled = next(n for n in archive.namelist() if n.endswith('/data.pkl'))
        assert archive.read(pickled)[:2] == b'\x80\x04', 'pickle protocol 4 was passed on'
    diskguard.save(obj, os.fsencode(tmp_path / 'b.pt'))  # bytes paths, as the os module takes them
    assert sorted(os.listdir(tmp_path)) == ['a.pt', 'b.pt', 'legacy.pt', 'p4.pt']


def test_overwriting_replaces_whole_and_a_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    diskguard.save(state(1, 100), tmp_path / 'target.pt')
    os.symlink('target.pt', tmp_path / 'last.pt')
    diskguard.save(state(2, 100), tmp_path / 'last.pt')
    assert not (tmp_path / 'last.pt').is_symlink()
    assert loads_as(tmp_path / 'last.pt', 2) and loads_as(tmp_path / 'target.pt', 1)
    diskguard.save(state(3, 100), tmp_path / 'last.pt')
    assert loads_as(tmp_path / 'last.pt', 3)


def test_disk_filling_mid_write_leaves_no_temp_file(disk: Path) -> None:
    diskguard.save(state(0), disk / 'step=0.pt')
    diskguard.save(state(1), disk / 'last.pt')
    with pytest.raises(DiskFullError) as caught:
        diskguard.save({'w': state(2)['w'], 'x': FillsTheDisk(disk)}, disk / 'last.pt')
    err = caught.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert err.filename == str(disk / 'last.pt')
    assert 'not saved' in str(err) and 'removed' in str(err)
    assert err.__cause__ is not None, 'chained from what torch.save raised'
    assert leftovers(disk) == []
    assert loads_as(disk / 'step=0.pt', 0) and loads_as(disk / 'last.pt', 1), 'the old last.pt is intact'
    assert diskguard.latest_complete(disk) is not None


def test_a_failing_serialisation_propagates_and_leaves_nothing(tmp_path: Path) -> None:
    diskguard.save(state(1, 100), tmp_path / 'last.pt')
    for error in (ValueError('cannot pickle this'), KeyboardInterrupt()):
        with pytest.raises(type(error)) as caught:
            diskguard.save({'w': torch.ones(3), 'bad': Raises(error)}, tmp_path / 'last.pt')
        assert caught.value is error, 'not wrapped: only a full disk becomes DiskFullError'
        assert sorted(os.listdir(tmp_path)) == ['last.pt']
        assert loads_as(tmp_path / 'last.pt', 1)


def test_preallocation_fails_before_any_byte_and_trims_to_the_real_size(disk: Path) -> None:
    diskguard.save(state(0), disk / 'plain.pt')
    diskguard.save(state(0), disk / 'reserved.pt', preallocate=True)
    assert (disk / 'reserved.pt').stat().st_size == (disk / 'plain.pt').stat().st_size
    assert loads_as(disk / 'reserved.pt', 0)
    (disk / 'filler').write_bytes(b'\0' * (diskguard.usage(disk).avail - MiB))
    marker = Raises(AssertionError('pickling started, so bytes were about to be written'))
    with pytest.raises(DiskFullError) as caught:
        diskguard.save({'w': state(1)['w'], 'm': marker}, disk / 'x.pt', RecordingGuard(), preallocate=True)
    assert caught.value.errno == errno.ENOSPC
    assert not marker.pickled, 'the reservation failed before torch.save started'
    assert leftovers(disk) == [] and not (disk / 'x.pt').exists()


def test_guard_is_asked_before_writing_and_told_after(tmp_path: Path) -> None:
    guard = RecordingGuard()
    path = tmp_path / 'step=5.pt'
    diskguard.save(state(5, 10_000), path, guard)
    (before, at, estimate, listing), (after, at_after, size, real_size, temps) = guard.calls
    assert (before, after) == ('before', 'after') and at == at_after == str(path)
    assert listing == [], 'nothing was written before the guard answered'
    assert size == real_size == path.stat().st_size and temps == []
    assert size <= estimate <= size + 64 * 1024

    refusing = RecordingGuard(refuse=True)
    with pytest.raises(InsufficientSpaceError, match='the guard found no room'):
        diskguard.save(state(6, 10_000), tmp_path / 'step=6.pt', refusing)
    assert [c[0] for c in refusing.calls] == ['before'], 'after_save only follows a save'
    assert sorted(os.listdir(tmp_path)) == ['step=5.pt']


def test_estimate_counts_each_storage_once_and_covers_the_file(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 256)).sum().backward()
    optimizer.step()
    base = torch.randn(100_000)
    objects = {
        'module and optimizer': {'model': model, 'optim': optimizer},
        'state dicts': {'model': model.state_dict(), 'optim': optimizer.state_dict()},
        'views of one storage': {'a': base, 'b': base[:10], 'c': base.view(100, 1000), 'loop': []},
        'many small tensors': [torch.ones(3) for _ in range(300)],
    }
    objects['views of one storage']['loop'].append(objects['views of one storage'])  # a cycle
    for label, obj in objects.items():
        diskguard.save(obj, tmp_path / 'x.pt')
        size = (tmp_path / 'x.pt').stat().st_size
        estimate = estimate_size(obj)
        assert size <= estimate <= size * 1.05 + 64 * 1024, (label, size, estimate)
    assert estimate_size({'no tensors': 1}, previous=lambda: 5 * MiB) == 5 * MiB


HOSTILE_PATHS = [
    ('', ValueError, "path='': expected the checkpoint's file name"),
    ('nul\0byte.pt', ValueError, 'NUL byte'),
    (5, TypeError, 'path=5: expected a file name'),
    (True, TypeError, 'path=True'),
    (None, TypeError, 'path=None'),
    (['a.pt'], TypeError, r"path=\['a.pt'\]"),
    (io.BytesIO(), TypeError, 'not a file object'),
]


@pytest.mark.parametrize(('path', 'error', 'message'), HOSTILE_PATHS, ids=lambda v: repr(v)[:20])
def test_hostile_paths_are_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: object, error: type, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message):
        diskguard.save({'w': torch.ones(2)}, path)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


@pytest.mark.timeout(20)
def test_special_files_and_directories_are_never_written_through(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / 'fifo.pt')
    (tmp_path / 'dir.pt').mkdir()
    obj = {'w': torch.ones(2)}
    with pytest.raises(ValueError, match=r"path='.*fifo.pt': is a FIFO"):
        diskguard.save(obj, tmp_path / 'fifo.pt')
    with pytest.raises(ValueError, match='is a character device'):
        diskguard.save(obj, '/dev/zero')
    with pytest.raises(IsADirectoryError) as caught:
        diskguard.save(obj, tmp_path / 'dir.pt')
    assert caught.value.filename == str(tmp_path / 'dir.pt')
    with pytest.raises(IsADirectoryError):
        diskguard.save(obj, f'{tmp_path}/')
    with pytest.raises(FileNotFoundError) as missing:
        diskguard.save(obj, tmp_path / 'no' / 'such' / 'x.pt')
    assert missing.value.filename == str(tmp_path / 'no' / 'such')
    assert sorted(os.listdir(tmp_path)) == ['dir.pt', 'fifo.pt'] and os.listdir(tmp_path / 'dir.pt') == []
    assert leftovers(Path('/dev')) == []


def test_other_bad_arguments_are_refused_before_writing(tmp_path: Path) -> None:
    obj = {'w': torch.ones(2)}
    with pytest.raises(TypeError, match="preallocate='yes': expected True or False"):
        diskguard.save(obj, tmp_path / 'a.pt', preallocate='yes')  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='guard=.*before_save'):
        diskguard.save(obj, tmp_path / 'a.pt', object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='argument.s. pickle_modul: torch.save accepts .*pickle_module'):
        diskguard.save(obj, tmp_path / 'a.pt', pickle_modul=pickle)
    assert os.listdir(tmp_path) == []


def test_disk_full_error_is_an_oserror_that_pickles() -> None:
    err = DiskFullError(errno.EDQUOT, 'Disk quota exceeded', '/ckpt/x.pt')
    assert isinstance(err, OSError) and isinstance(err, diskguard.DiskGuardError)
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.errno, back.filename) == (DiskFullError, errno.EDQUOT, '/ckpt/x.pt')


def test_quota_exceeded_mid_write_is_reported_and_leaves_nothing(btrfs_quota: Path) -> None:
    floats = 10 * MiB // 4 * 4  # 40 MiB: one fits under the 64 MiB quota, two do not
    diskguard.save(state(0, floats), btrfs_quota / 'step=0.pt')
    assert diskguard.usage(btrfs_quota).avail > 2 * floats * 4, 'statvfs shows room: only the quota says no'
    with pytest.raises(DiskFullError) as caught:
        diskguard.save(state(1, floats), btrfs_quota / 'step=1.pt')
    assert caught.value.errno == errno.EDQUOT and caught.value.filename == str(btrfs_quota / 'step=1.pt')
    assert 'quota' in str(caught.value)
    assert sorted(os.listdir(btrfs_quota)) == ['step=0.pt']
    assert loads_as(btrfs_quota / 'step=0.pt', 0)

    marker = Raises(AssertionError('pickling started'))
    with pytest.raises(DiskFullError) as reserved:
        diskguard.save({'w': state(1, floats)['w'], 'm': marker}, btrfs_quota / 'r.pt', preallocate=True)
    assert reserved.value.errno == errno.EDQUOT and not marker.pickled
    assert sorted(os.listdir(btrfs_quota)) == ['step=0.pt']
    assert QUOTA_LIMIT < 2 * floats * 4


def test_latest_complete_over_files_folders_and_partial_saves(tmp_path: Path) -> None:
    assert diskguard.latest_complete(tmp_path) is None
    diskguard.save(state(1, 10), tmp_path / 'step=100.pt')
    torch.save(state(2, 10), tmp_path / 'step=200.pt')
    (tmp_path / 'step=300.pt').write_bytes((tmp_path / 'step=200.pt').read_bytes()[:100])  # truncated
    (tmp_path / '.diskguard-step=400.pt.0a1b2c3d.tmp').write_bytes((tmp_path / 'step=200.pt').read_bytes())
    assert diskguard.latest_complete(tmp_path) == str(tmp_path / 'step=200.pt')

    hf = tmp_path / 'hf'
    (hf / 'checkpoint-10').mkdir(parents=True)
    (hf / 'checkpoint-10' / 'trainer_state.json').write_text('{}')
    (hf / 'checkpoint-20').mkdir()
    (hf / 'checkpoint-20' / 'model.safetensors').write_bytes(b'partial')
    assert diskguard.latest_complete(hf) == str(hf / 'checkpoint-10')
    (hf / 'checkpoint-20' / 'trainer_state.json').write_text('{}')
    assert diskguard.latest_complete(os.fsencode(hf)) == str(hf / 'checkpoint-20')

    (tmp_path / 'weights.npz').write_bytes(b'npz-' * 64)
    assert diskguard.latest_complete(tmp_path, patterns=['*.npz']) == str(tmp_path / 'weights.npz')


def test_latest_complete_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"patterns='\*.npz': expected a list of glob strings"):
        diskguard.latest_complete(tmp_path, patterns='*.npz')  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='patterns=3: expected glob strings'):
        diskguard.latest_complete(tmp_path, patterns=['*.pt', 3])  # type: ignore[list-item]
    with pytest.raises(
        TypeError, match=r'directory=5: expected a path \(str, bytes or os.PathLike\), got int'
    ):
        diskguard.latest_complete(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="directory='': expected a non-empty path"):
        diskguard.latest_complete('')
    # A directory not created yet holds nothing to resume from (the README's promise).
    assert diskguard.latest_complete(tmp_path / 'missing') is None
    (tmp_path / 'f').write_text('x')
    with pytest.raises(NotADirectoryError):
        diskguard.latest_complete(tmp_path / 'f')


def test_import_diskguard_does_not_import_torch() -> None:
    code = 'import sys, diskguard; diskguard.save; print("torch" in sys.modules)'
    done = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True)
    assert done.stdout.strip() == 'False'


KILLED_MID_SAVE = """
import sys, time, torch, diskguard

class Stall:
    def __reduce__(self):
        print('writing', flush=True)
        time.sleep(60)
        return (dict, ())

diskguard.save({'w': torch.ones(1000), 'stall': Stall()}, sys.argv[1])
"""


@pytest.mark.timeout(60)
def test_a_save_killed_midway_leaves_a_temp_file_that_resume_and_orphans_recognise(tmp_path: Path) -> None:
    diskguard.save(state(1, 100), tmp_path / 'last.pt')
    writer = subprocess.Popen(
        [sys.executable, '-c', KILLED_MID_SAVE, str(tmp_path / 'last.pt')], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == 'writing'
    finally:
        writer.kill()
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    (temp,) = leftovers(tmp_path)
    assert temp.startswith('.diskguard-last.pt.') and temp.endswith('.tmp')
    assert loads_as(tmp_path / 'last.pt', 1), 'SIGKILL mid-save: the old checkpoint is whole'
    assert diskguard.latest_complete(tmp_path) == str(tmp_path / 'last.pt')
    orphans = diskguard.find_orphans(tmp_path, include_temp_dir=False, min_age=0)
    assert [Path(o.path).name for o in orphans] == [temp]
    diskguard.remove_orphans(orphans)
    assert sorted(os.listdir(tmp_path)) == ['last.pt']


def test_no_inode_left_is_a_full_disk_and_the_target_is_named(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / 'few', size='4m', nr_inodes=8) as disk:
        diskguard.save(state(0, 100), disk / 'first.pt')
        with pytest.raises(OSError) as no_inode:
            for i in range(10):
                (disk / f'f{i}').touch()
        assert no_inode.value.errno == errno.ENOSPC
        with pytest.raises(DiskFullError) as caught:
            diskguard.save(state(1, 100), disk / 'first.pt')
        assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(disk / 'first.pt')
        assert 'nothing was written' in str(caught.value)
        assert loads_as(disk / 'first.pt', 0)


def test_an_unwritable_directory_names_the_target(open_dir: Path) -> None:
    locked = open_dir / 'root-only'
    locked.mkdir(mode=0o755)
    with as_user(), pytest.raises(PermissionError) as caught:
        diskguard.save({'w': torch.ones(2)}, locked / 'x.pt')
    assert caught.value.filename == str(locked / 'x.pt')
    assert f'creating a file in {locked}' in str(caught.value)
    assert os.listdir(locked) == []


def test_a_name_too_long_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError) as caught:
        diskguard.save({'w': torch.ones(2)}, tmp_path / ('x' * 300 + '.pt'))
    assert caught.value.errno == errno.ENAMETOOLONG
    assert os.listdir(tmp_path) == []
    longest = tmp_path / ('y' * 252 + '.pt')  # 255 bytes: the temp name is shortened, the target not
    diskguard.save(state(2, 10), longest)
    assert loads_as(longest, 2) and os.listdir(tmp_path) == [longest.name]


# -- issue 17, item 9: the replaced file's mode and owner, Ctrl-C, and temp files of killed saves ----


def test_saving_over_a_file_keeps_its_mode_and_owner(tmp_path: Path) -> None:
    target = tmp_path / 'private.pt'
    diskguard.save(state(1, 100), target)
    target.chmod(0o600)
    os.chown(target, NOBODY, NOBODY)
    old = os.umask(0o022)
    try:
        diskguard.save(state(2, 100), target)
    finally:
        os.umask(old)
    st = target.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, NOBODY, NOBODY)
    assert loads_as(target, 2)
    # A new name still gets the umask's mode.
    diskguard.save(state(3, 100), tmp_path / 'new.pt')
    assert (tmp_path / 'new.pt').stat().st_mode & 0o777 == 0o644


def test_a_file_another_user_planted_in_a_shared_directory_does_not_get_our_checkpoint(
    open_dir: Path,
) -> None:
    """In a sticky world-writable directory another user can create the checkpoint's name first.
    Keeping that file's owner and mode would hand root's checkpoint to them (a pickle root later
    loads), so there, as the kernel's fs.protected_regular reasons, it is replaced by a file of ours."""
    shared = open_dir / 'shared'
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / 'model.pt'
    subprocess.run(
        ['setpriv', '--reuid', str(NOBODY), '--regid', str(NOBODY), '--clear-groups',
         'sh', '-c', f'echo x > {planted} && chmod 666 {planted}'],
        check=True, timeout=30,
    )  # fmt: skip
    old = os.umask(0o022)
    try:
        diskguard.save(state(1, 100), planted)
    finally:
        os.umask(old)
    st = planted.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o644)
    assert loads_as(planted, 1)


def test_ctrl_c_inside_the_writer_propagates_as_keyboard_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diskguard import saving

    target = tmp_path / 'big.pt'
    diskguard.save(state(1, 100), target)
    original = saving._RecordingFile.write

    def write(self: Any, data: Any) -> int:
        if len(data) >= 1 << 20:
            # As a real Ctrl-C does: the signal's handler raises in whatever Python code runs
            # next, here the write torch's C++ writer called back into.
            signal.raise_signal(signal.SIGINT)
        return original(self, data)

    monkeypatch.setattr(saving._RecordingFile, 'write', write)
    # Python's own Ctrl-C handler, whatever an earlier test in this process left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            diskguard.save(state(2, 1 << 20), target)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert type(caught.value) is KeyboardInterrupt
    assert leftovers(tmp_path) == []
    assert loads_as(target, 1)


def _start_stalled_writer(path: Path) -> subprocess.Popen[str]:
    writer = subprocess.Popen(
        [sys.executable, '-c', KILLED_MID_SAVE, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == 'writing'
    return writer


def _stop(writer: subprocess.Popen[str], sig: int) -> None:
    writer.send_signal(sig)
    writer.wait(timeout=30)
    if writer.stdout is not None:
        writer.stdout.close()


def _backdate(path: Path) -> None:
    """Makes a temp file look older than a just-created one, instead of waiting a second."""
    os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)


@pytest.mark.timeout(120)
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])
def test_the_next_guard_start_removes_temp_files_of_killed_saves(tmp_path: Path, sig: int) -> None:
    diskguard.save(state(1, 100), tmp_path / 'last.pt')
    _stop(_start_stalled_writer(tmp_path / 'last.pt'), sig)
    (temp,) = leftovers(tmp_path)
    _backdate(tmp_path / temp)

    diskguard.DiskGuard(tmp_path)

    assert leftovers(tmp_path) == []
    assert loads_as(tmp_path / 'last.pt', 1)


@pytest.mark.timeout(120)
def test_a_guard_start_leaves_a_temp_name_hard_linked_to_another_file(open_dir: Path) -> None:
    """Another user's hard link to one of our files, given a temp file's name, is not a killed save
    of ours (a save's temp file has one link): the guard leaves that name to its maker."""
    shared = open_dir / 'shared'
    shared.mkdir()
    shared.chmod(0o1777)
    ours = open_dir / 'ours.txt'
    ours.write_bytes(b'ours')
    ours.chmod(0o666)  # fs.protected_hardlinks lets another user link a file it can read and write
    _backdate(ours)
    planted = shared / '.diskguard-planted.pt.0000.tmp'
    subprocess.run(
        ['setpriv', '--reuid', str(NOBODY), '--regid', str(NOBODY), '--clear-groups', 'ln', ours, planted],
        check=True,
        timeout=30,
    )

    diskguard.DiskGuard(shared)

    assert leftovers(shared) == [planted.name]
    assert ours.stat().st_nlink == 2


def test_a_guard_start_leaves_live_writers_and_other_users_temp_files(tmp_path: Path) -> None:
    tmp_path.chmod(0o1777)
    writer = _start_stalled_writer(tmp_path / 'live.pt')
    try:
        (live,) = leftovers(tmp_path)
        _backdate(tmp_path / live)
        theirs = tmp_path / '.diskguard-theirs.pt.0000.tmp'
        theirs.write_bytes(b'x')
        os.chown(theirs, NOBODY, NOBODY)
        _backdate(theirs)
        (tmp_path / '.diskguard-link.pt.0000.tmp').symlink_to(tmp_path / 'live.pt')

        diskguard.DiskGuard(tmp_path)

        assert leftovers(tmp_path) == sorted([live, theirs.name, '.diskguard-link.pt.0000.tmp'])
    finally:
        _stop(writer, signal.SIGKILL)
