"""Checkpoint retention on real directories: discovery, rules, the invariants, safe deletion."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import diskguard
import pytest
from diskguard import (
    DirectoryBusyError,
    DiskGuardError,
    KeepBest,
    KeepEvery,
    KeepLast,
    KeepWithin,
    Protect,
    RetentionPolicy,
    apply,
    plan,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NOW = time.time()


def torch_file(path: Path, complete: bool = True, size: int = 1000, mtime: float | None = None) -> Path:
    """A file shaped like torch.save's zip format; `complete=False` cuts off its central directory."""
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('archive/data.pkl', os.urandom(size))
    if not complete:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def actions(p: diskguard.RetentionPlan) -> dict[str, str]:
    return {str(i.name): i.action for i in p.items}


def safetensors_file(path: Path, mtime: float) -> Path:
    """A complete safetensors file (an 8-byte header length, the JSON header, no tensors)."""
    header = b'{}'
    path.write_bytes(len(header).to_bytes(8, 'little') + header)
    os.utime(path, (mtime, mtime))
    return path


@pytest.mark.parametrize('marker', ['config.json', 'adapter_config.json', 'training_args.bin'])
def test_parts_of_a_saved_model_are_never_checkpoints_of_their_own(tmp_path: Path, marker: str) -> None:
    """A final model saved into the checkpoint directory (``save_pretrained``, sharded, with its
    training state) is newer than every checkpoint, but none of its files is one: deleting one
    shard would break it, and taking ``training_args.bin`` for the newest checkpoint would delete
    the real one under ``KeepLast(1)``."""
    for step in (1, 2):
        folder = tmp_path / f'checkpoint-{step}'
        folder.mkdir()
        (folder / 'trainer_state.json').write_text('{}')
        os.utime(folder, (NOW - 100 + step, NOW - 100 + step))
    (tmp_path / marker).write_bytes(b'{}')
    (tmp_path / 'model.safetensors.index.json').write_text('{"weight_map": {}}')
    for name in ('model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors'):
        safetensors_file(tmp_path / name, mtime=NOW - 10)
    for name in ('optimizer.pt', 'scheduler.pt', 'rng_state_1.pth'):
        torch_file(tmp_path / name, mtime=NOW - 10)

    assert actions(plan(tmp_path, RetentionPolicy(KeepLast(1)))) == {
        'checkpoint-1': 'delete',
        'checkpoint-2': 'keep',
    }
    assert diskguard.latest_complete(tmp_path) == str(tmp_path / 'checkpoint-2')


def test_a_lone_weights_file_is_still_a_checkpoint(tmp_path: Path) -> None:
    """Without a saved model's config or training arguments beside it, ``model.safetensors`` is a
    checkpoint like any other, and so is ``MODEL.SAFETENSORS`` beside a *directory* named
    config.json (which marks nothing); a shard-like name that is not ``-NNNNN-of-NNNNN`` is one too."""
    (tmp_path / 'config.json').mkdir()
    safetensors_file(tmp_path / 'MODEL.SAFETENSORS', mtime=NOW - 20)
    torch_file(tmp_path / 'epoch-3-of-10.ckpt', mtime=NOW - 10)
    assert actions(plan(tmp_path)) == {'MODEL.SAFETENSORS': 'delete', 'epoch-3-of-10.ckpt': 'keep'}


def test_a_series_named_like_shards_without_a_shard_index_is_a_series_of_checkpoints(tmp_path: Path) -> None:
    """``ckpt-00001-of-00010.pt`` ("epoch 1 of 10") is a checkpoint when no ``*.index.json`` says
    the files are shards of one save: retention frees space from the series and resumes from it."""
    for k in range(1, 5):
        torch_file(tmp_path / f'ckpt-{k:05d}-of-00010.pt', mtime=NOW - 50 + k)
    assert actions(plan(tmp_path, RetentionPolicy(KeepLast(2)))) == {
        'ckpt-00001-of-00010.pt': 'delete',
        'ckpt-00002-of-00010.pt': 'delete',
        'ckpt-00003-of-00010.pt': 'keep',
        'ckpt-00004-of-00010.pt': 'keep',
    }
    assert diskguard.latest_complete(tmp_path) == str(tmp_path / 'ckpt-00004-of-00010.pt')


def test_a_callers_pattern_wins_over_the_parts_of_a_save(tmp_path: Path) -> None:
    (tmp_path / 'training_args.bin').write_bytes(b'args')
    (tmp_path / 'optimizer.pt').write_bytes(b'x' * 100)
    safetensors_file(tmp_path / 'model.safetensors', mtime=NOW - 10)
    assert actions(plan(tmp_path)) == {}
    assert actions(plan(tmp_path, RetentionPolicy(patterns='model.*'))) == {'model.safetensors': 'keep'}


def test_a_crashed_save_of_a_part_is_still_a_partial_save_to_clean_up(tmp_path: Path) -> None:
    """``optimizer.pt.tmp`` is a leftover of an unfinished save, not a part of a finished one."""
    torch_file(tmp_path / 'step_5.pt', mtime=NOW - 5)
    for name in ('optimizer.pt.tmp', 'training_args.bin.partial', 'model-00001-of-00002.safetensors.tmp'):
        (tmp_path / name).write_bytes(b'half')
        os.utime(tmp_path / name, (NOW - 3600, NOW - 3600))
    decided = actions(plan(tmp_path, RetentionPolicy(KeepLast(1), min_partial_age=0)))
    assert decided == {
        'optimizer.pt.tmp': 'delete',
        'training_args.bin.partial': 'delete',
        'model-00001-of-00002.safetensors.tmp': 'delete',
        'step_5.pt': 'keep',
    }


def test_discovers_every_framework_layout(tmp_path: Path) -> None:
    torch_file(tmp_path / 'epoch=2-step=24.ckpt', mtime=NOW - 50)
    torch_file(tmp_path / 'epoch=2-step=24-v1.ckpt', mtime=NOW - 49)
    torch_file(tmp_path / 'model_0005.pt', mtime=NOW - 48)
    torch_file(tmp_path / 'step_1000.pth', mtime=NOW - 47)
    hf = tmp_path / 'checkpoint-500'
    hf.mkdir()
    (hf / 'model.safetensors').write_bytes(b'x' * 100)
    (hf / 'trainer_state.json').write_text('{}')
    titan = tmp_path / 'step-800'
    titan.mkdir()
    (titan / '__0_0.distcp').write_bytes(b'x' * 10)
    (titan / '.metadata').write_bytes(b'm')
    orbax = tmp_path / '900'
    orbax.mkdir()
    (tmp_path / 'README.txt').write_text('not a checkpoint')
    items = {str(i.name): i for i in plan(tmp_path).items}
    assert set(items) == {
        'epoch=2-step=24.ckpt',
        'epoch=2-step=24-v1.ckpt',
        'model_0005.pt',
        'step_1000.pth',
        'checkpoint-500',
        'step-800',
        '900',
    }
    assert (items['checkpoint-500'].format, items['checkpoint-500'].step) == ('huggingface', 500)
    assert (items['step-800'].format, items['900'].format) == ('dcp', 'orbax')
    assert (items['model_0005.pt'].step, items['epoch=2-step=24-v1.ckpt'].epoch) == (5, 2)
    assert items['checkpoint-500'].size >= 100 and items['checkpoint-500'].apparent_size >= 102


def test_partial_saves_are_recognised_and_never_count(tmp_path: Path) -> None:
    torch_file(tmp_path / 'step=100.ckpt', mtime=NOW - 100)
    torch_file(tmp_path / 'step=200.ckpt', complete=False, mtime=NOW - 10)
    (tmp_path / 'step=300.ckpt.tmp').write_bytes(b'partial')
    (tmp_path / 'empty.pt').write_bytes(b'')
    (tmp_path / 'tmp-checkpoint-400').mkdir()
    (tmp_path / 'checkpoint-450').mkdir()  # no trainer_state.json yet
    dcp = tmp_path / 'step-460'
    dcp.mkdir()
    (dcp / '__0_0.distcp').write_bytes(b'x')
    (tmp_path / '470.orbax-checkpoint-tmp-123').mkdir()
    header = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    (tmp_path / 'cut.safetensors').write_bytes(len(header).to_bytes(8, 'little') + header + b'\0' * 8)
    p = plan(tmp_path, RetentionPolicy(KeepLast(5)))
    items = {str(i.name): i for i in p.items}
    assert items['step=100.ckpt'].action == 'keep'
    assert 'newest complete checkpoint' in items['step=100.ckpt'].reasons
    for name in [n for n in items if n != 'step=100.ckpt']:
        assert not items[name].complete, name
        assert items[name].action == 'skip', (name, items[name].reasons)
    assert 'central-directory' in (items['step=200.ckpt'].incomplete_reason or '')
    assert 'safetensors' in (items['cut.safetensors'].incomplete_reason or '')


def test_rules_combine_as_keep_if_any_keeps(tmp_path: Path) -> None:
    for s in range(1, 11):
        torch_file(tmp_path / f'epoch={s}-step={s * 100}-val_acc={s % 4 / 10:.2f}.ckpt', mtime=NOW - 1000 + s)
    os.symlink('epoch=2-step=200-val_acc=0.20.ckpt', tmp_path / 'last.ckpt')
    policy = RetentionPolicy(
        KeepLast(2),
        KeepBest(1, 'val_acc', mode='max'),
        KeepEvery(500),
        Protect(tmp_path / 'epoch=1-step=100-val_acc=0.10.ckpt'),
    )
    a = actions(plan(tmp_path, policy))
    kept = sorted(n for n, act in a.items() if act == 'keep')
    assert kept == [
        'epoch=1-step=100-val_acc=0.10.ckpt',  # protected
        'epoch=10-step=1000-val_acc=0.20.ckpt',  # last 2, milestone
        'epoch=2-step=200-val_acc=0.20.ckpt',  # symlink target
        'epoch=5-step=500-val_acc=0.10.ckpt',  # milestone
        'epoch=7-step=700-val_acc=0.30.ckpt',  # best (0.3, newest of the ties)
        'epoch=9-step=900-val_acc=0.10.ckpt',  # last 2
    ]
    assert 'last.ckpt' not in a, 'a symlink is a pointer, not a checkpoint'


def test_plan_then_apply_deletes_exactly_the_plan(tmp_path: Path) -> None:
    for s in range(1, 6):
        torch_file(tmp_path / f'step={s}.ckpt', mtime=NOW - 100 + s)
    (tmp_path / 'step=1.ckpt').chmod(0o444)  # a read-only file in a writable directory still goes
    p = plan(tmp_path, RetentionPolicy(KeepLast(2)))
    planned = {str(i.path) for i in p.items if i.action == 'delete'}
    assert p.bytes_freed == sum(i.bytes_freed for i in p.items) > 0
    results = apply(p)
    assert {str(path) for path, outcome, _ in results if outcome == 'deleted'} == planned
    assert sorted(os.listdir(tmp_path)) == ['step=4.ckpt', 'step=5.ckpt']


def test_caller_patterns_add_file_checkpoints(tmp_path: Path) -> None:
    for s in range(3):
        (tmp_path / f'weights-{s:02d}.npz').write_bytes(b'x' * 10)
        os.utime(tmp_path / f'weights-{s:02d}.npz', (NOW - 10 + s, NOW - 10 + s))
    assert len(plan(tmp_path)) == 0, 'not a checkpoint extension'
    p = plan(tmp_path, RetentionPolicy(KeepLast(1), patterns=['weights-??.npz']))
    assert actions(p) == {'weights-00.npz': 'delete', 'weights-01.npz': 'delete', 'weights-02.npz': 'keep'}


def test_keep_within(tmp_path: Path) -> None:
    torch_file(tmp_path / 'a.pt', mtime=NOW - 7200)
    torch_file(tmp_path / 'b.pt', mtime=NOW - 600)
    torch_file(tmp_path / 'c.pt', mtime=NOW - 60)
    a = actions(plan(tmp_path, RetentionPolicy(KeepWithin(1800)), now=NOW))
    assert a == {'a.pt': 'delete', 'b.pt': 'keep', 'c.pt': 'keep'}


def test_symlink_pointing_outside_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / 'outside'
    outside.mkdir()
    victim = torch_file(outside / 'precious.ckpt')
    ckpts = tmp_path / 'ckpts'
    ckpts.mkdir()
    os.symlink(victim, ckpts / 'evil.ckpt')
    os.symlink(outside, ckpts / 'checkpoint-999')
    for s in range(3):
        torch_file(ckpts / f'step={s}.ckpt', mtime=NOW - 10 + s)
    p = plan(ckpts, RetentionPolicy(KeepLast(1)))
    assert {str(i.name) for i in p.items} == {'step=0.ckpt', 'step=1.ckpt', 'step=2.ckpt'}
    apply(p)
    assert victim.exists() and (ckpts / 'evil.ckpt').is_symlink() and (ckpts / 'checkpoint-999').is_symlink()
    assert sorted(os.listdir(outside)) == ['precious.ckpt']


def test_symlink_loop_and_odd_names(tmp_path: Path) -> None:
    os.symlink('b.ckpt', tmp_path / 'a.ckpt')
    os.symlink('a.ckpt', tmp_path / 'b.ckpt')
    names = ['café-step=1.ckpt', 'line\nbreak-step=2.ckpt', 'step=3 with space.ckpt']
    for i, name in enumerate(names):
        torch_file(tmp_path / name, mtime=NOW - 10 + i)
    raw = os.fsencode(tmp_path) + b'/bad-\xff-step=4.ckpt'
    with open(raw, 'wb') as f:
        f.write((tmp_path / names[0]).read_bytes())
    os.utime(raw, (NOW, NOW))
    p = plan(tmp_path, RetentionPolicy(KeepLast(1)))
    assert len(p.items) == 4
    results = apply(p)
    assert sorted(o for _, o, _ in results) == ['deleted', 'deleted', 'deleted']
    assert os.path.exists(raw), 'the newest (non-UTF-8 name) survives'
    assert os.listdir(tmp_path).count('a.ckpt') == 1


def test_hard_links_free_nothing(tmp_path: Path) -> None:
    torch_file(tmp_path / 'step=1.ckpt', size=50_000, mtime=NOW - 10)
    os.link(tmp_path / 'step=1.ckpt', tmp_path / 'copy-elsewhere.bin.keep')
    torch_file(tmp_path / 'step=2.ckpt', mtime=NOW)
    p = plan(tmp_path, RetentionPolicy(KeepLast(1)))
    old = next(i for i in p.items if str(i.name) == 'step=1.ckpt')
    assert old.action == 'delete' and old.bytes_freed == 0
    assert any('hard-linked' in r for r in old.reasons)


def test_read_only_directory_reports_failures_and_goes_on(tmp_path: Path, open_dir: Path) -> None:
    from conftest import as_user

    ckpts = open_dir / 'ro'
    ckpts.mkdir()
    for s in range(3):
        torch_file(ckpts / f'step={s}.ckpt', mtime=NOW - 10 + s)
    os.chown(ckpts / 'step=0.ckpt', 65534, 65534)
    os.chmod(ckpts / 'step=0.ckpt', 0o444)
    p = plan(ckpts, RetentionPolicy(KeepLast(1)))
    ckpts.chmod(0o555)
    try:
        with as_user():
            results = apply(p)
    finally:
        ckpts.chmod(0o755)
    assert [o for _, o, _ in results] == ['failed', 'failed']
    assert all('Permission denied' in d or 'Read-only' in d for _, _, d in results)
    assert len(os.listdir(ckpts)) == 3, 'nothing deleted, nothing raised'


def test_directory_swapped_for_a_symlink_between_plan_and_apply(tmp_path: Path) -> None:
    ckpts = tmp_path / 'ckpts'
    ckpts.mkdir()
    for s in range(3):
        torch_file(ckpts / f'step={s}.ckpt', mtime=NOW - 10 + s)
    p = plan(ckpts, RetentionPolicy(KeepLast(1)))
    decoy = tmp_path / 'decoy'
    shutil.copytree(ckpts, decoy)
    ckpts.rename(tmp_path / 'moved')
    os.symlink(decoy, ckpts)
    with pytest.raises(OSError):
        apply(p)
    ckpts.unlink()
    decoy.rename(ckpts)  # a different directory with the same name and files
    with pytest.raises(DiskGuardError, match='replaced since it was scanned'):
        apply(p)
    assert len(os.listdir(ckpts)) == 3 and len(os.listdir(tmp_path / 'moved')) == 3


def test_entry_replaced_after_planning_is_left_alone(tmp_path: Path) -> None:
    for s in range(3):
        torch_file(tmp_path / f'step={s}.ckpt', mtime=NOW - 10 + s)
    p = plan(tmp_path, RetentionPolicy(KeepLast(1)))
    (tmp_path / 'step=0.ckpt').unlink()
    torch_file(tmp_path / 'step=0.ckpt')  # a new file under the old name
    results = {Path(path).name: (o, d) for path, o, d in apply(p)}
    assert results['step=0.ckpt'][0] == 'skipped' and 'different inode' in results['step=0.ckpt'][1]
    assert results['step=1.ckpt'][0] == 'deleted'
    assert (tmp_path / 'step=0.ckpt').exists()


def test_refuses_root_and_reports_bad_rules(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='root directory'):
        plan('/')
    with pytest.raises(FileNotFoundError):
        plan(tmp_path / 'missing')
    with pytest.raises(ValueError, match='keep_last=0'):
        plan(tmp_path, RetentionPolicy(KeepLast(0)))
    with pytest.raises(ValueError, match="mode='avg'"):
        plan(tmp_path, RetentionPolicy(KeepBest(1, 'loss', mode='avg')))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rules='keep everything': expected KeepLast"):
        RetentionPolicy('keep everything')  # type: ignore[arg-type]


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print('locked', flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_two_processes_never_prune_at_once(tmp_path: Path) -> None:
    for s in range(4):
        torch_file(tmp_path / f'step={s}.ckpt', mtime=NOW - 10 + s)
    p = plan(tmp_path, RetentionPolicy(KeepLast(1)))
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLD_LOCK, str(tmp_path), '1.5'], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == 'locked'
        with pytest.raises(DirectoryBusyError):
            apply(p, wait=False)
        assert len(os.listdir(tmp_path)) == 4
        started = time.monotonic()
        results = apply(p, wait=True)
        assert time.monotonic() - started > 0.5, 'it waited for the other process'
        assert [o for _, o, _ in results] == ['deleted'] * 3
    finally:
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_same_plan_applied_by_two_processes_deletes_each_file_once(tmp_path: Path) -> None:
    for s in range(30):
        torch_file(tmp_path / f'step={s}.ckpt', mtime=NOW - 100 + s)
    code = (
        'import sys, json, diskguard\n'
        'p = diskguard.plan(sys.argv[1], diskguard.RetentionPolicy(diskguard.KeepLast(1)))\n'
        'print(json.dumps([o for _, o, _ in diskguard.apply(p)]))\n'
    )
    procs = [
        subprocess.Popen([sys.executable, '-c', code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    deleted = sum(o.count('deleted') for o in outs)
    assert deleted == 29, outs
    assert all(o in ('deleted', 'skipped') for out in outs for o in out)
    assert os.listdir(tmp_path) == ['step=29.ckpt']


def test_free_space_stops_at_target_and_at_the_invariant(tmpfs: Path) -> None:
    for s in range(10):
        path = tmpfs / f'step={s}-loss={s / 10:.1f}.ckpt'
        path.write_bytes(os.urandom(1024 * 1024))
        os.utime(path, (NOW - 100 + s, NOW - 100 + s))
    before = diskguard.usage(tmpfs).avail
    policy = RetentionPolicy(KeepLast(3), KeepBest(1, 'loss'))
    result = diskguard.free_space(tmpfs, policy, target_bytes=before + 3 * 1024 * 1024)
    assert result.met and len(result.deleted) == 3
    assert [Path(p).name for p in result.deleted] == [
        'step=1-loss=0.1.ckpt',
        'step=2-loss=0.2.ckpt',
        'step=3-loss=0.3.ckpt',
    ]
    # A target that deleting everything cannot reach deletes nothing and says by how much it misses.
    everything = diskguard.free_space(tmpfs, policy, target_bytes='1TiB')
    assert not everything.met and everything.avail < everything.target == 2**40
    assert everything.deleted == [] and len(os.listdir(tmpfs)) == 7
    assert everything.shortfall is not None and everything.shortfall > 2**40 - everything.avail - 7 * 2**20
    reachable = diskguard.free_space(tmpfs, policy, target_bytes=everything.avail + 5 * 1024 * 1024)
    assert reachable.met
    left = sorted(os.listdir(tmpfs))
    assert 'step=9-loss=0.9.ckpt' in left, 'the newest complete checkpoint is never deleted'


def test_free_space_by_fraction_deletes_until_the_fraction_is_free(tmpfs: Path) -> None:
    for s in range(12):
        path = tmpfs / f'step={s}.ckpt'
        path.write_bytes(os.urandom(1024 * 1024))
        os.utime(path, (NOW - 100 + s, NOW - 100 + s))
    usage = diskguard.usage(tmpfs)
    assert usage.avail < 0.5 * usage.total, 'the test needs deletions to reach half free'
    result = diskguard.free_space(tmpfs, target_fraction=0.5)
    after = diskguard.usage(tmpfs)
    assert result.met and result.deleted and after.avail >= 0.5 * after.total
    assert result.target == int(0.5 * usage.total)
    assert (tmpfs / 'step=11.ckpt').exists()
    assert not (tmpfs / 'step=0.ckpt').exists(), 'oldest first'


def test_free_space_target_is_bytes_or_a_fraction_never_ambiguous(tmp_path: Path) -> None:
    torch_file(tmp_path / 'step=1.ckpt', mtime=NOW - 10)
    with pytest.raises(TypeError, match=r'target_bytes=1\.0: expected a whole number of bytes'):
        diskguard.free_space(tmp_path, target_bytes=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='exactly one of target_bytes'):
        diskguard.free_space(tmp_path)
    with pytest.raises(ValueError, match='exactly one of target_bytes'):
        diskguard.free_space(tmp_path, target_bytes=1, target_fraction=0.5)
    for bad in (0.0, 1.5, float('nan'), -0.1):
        with pytest.raises(ValueError, match='target_fraction='):
            diskguard.free_space(tmp_path, target_fraction=bad)
    with pytest.raises(TypeError, match='target_fraction=True'):
        diskguard.free_space(tmp_path, target_fraction=True)
    with pytest.raises(TypeError, match="policy='50GiB': expected a RetentionPolicy"):
        diskguard.free_space(tmp_path, '50GiB')  # type: ignore[arg-type]
    assert (tmp_path / 'step=1.ckpt').exists()


def test_orphans_in_the_directory_and_the_temp_dir(tmp_path: Path) -> None:
    ckpts, temp = tmp_path / 'ckpts', tmp_path / 'tmp'
    ckpts.mkdir()
    temp.mkdir()
    old = NOW - 7200
    torch_file(ckpts / 'step=1.ckpt', mtime=old)
    (ckpts / 'step=2.ckpt.tmp').write_bytes(b'x' * 5000)
    os.utime(ckpts / 'step=2.ckpt.tmp', (old, old))
    (ckpts / 'step=3.ckpt.tmp').write_bytes(b'young')  # an in-flight save
    torch_file(temp / 'tmpab12cd34', mtime=old)  # fsspec staging file with a torch zip
    (temp / 'tmpzz99yy88').write_bytes(b'not a zip')
    os.utime(temp / 'tmpzz99yy88', (old, old))
    (temp / 'tmp-checkpoint-7').mkdir()
    os.utime(temp / 'tmp-checkpoint-7', (old, old))
    theirs = temp / 'tmp-checkpoint-8'
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    os.utime(theirs, (old, old))
    found = diskguard.find_orphans(ckpts, temp_dir=temp, min_age=3600)
    names = sorted(Path(o.path).name for o in found)
    assert names == ['step=2.ckpt.tmp', 'tmp-checkpoint-7', 'tmpab12cd34']
    assert all(o.size > 0 or Path(o.path).is_dir() for o in found)
    results = diskguard.remove_orphans(found)
    assert [o for _, o, _ in results] == ['deleted'] * 3
    assert (ckpts / 'step=3.ckpt.tmp').exists() and theirs.exists() and (temp / 'tmpzz99yy88').exists()


def test_cli_prune_dry_run_and_apply(tmp_path: Path) -> None:
    for s in range(1, 5):
        torch_file(tmp_path / f'epoch={s}-step={s * 10}-val_loss={1 / s:.2f}.ckpt', mtime=NOW - 100 + s)
    run = lambda *a: subprocess.run(
        [sys.executable, '-m', 'diskguard', 'prune', str(tmp_path), *a],
        capture_output=True,
        text=True,
        check=False,
    )
    dry = run('--keep-last', '1', '--keep-best', '1', '--metric', 'val_loss', '--mode', 'max', '--dry-run')
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].split() == ['ACTION', 'CHECKPOINT', 'STEP', 'SIZE', 'WHY']
    assert any(
        line.startswith('delete  epoch=2-step=20') and 'not kept by any rule' in line for line in lines
    )
    assert any('newest complete checkpoint' in line for line in lines)
    assert any(
        line.startswith('keep    epoch=1-step=10') and 'best 1 by val_loss (1)' in line for line in lines
    )
    assert '2 kept, 2 to delete' in dry.stdout and 'dry run: nothing deleted' in dry.stdout
    assert len(os.listdir(tmp_path)) == 4
    done = run('--keep-last', '1', '--json')
    report = json.loads(done.stdout)
    assert [r['outcome'] for r in report['results']] == ['deleted'] * 3
    assert os.listdir(tmp_path) == ['epoch=4-step=40-val_loss=0.25.ckpt']
    bad = run('--keep-best', '2')
    assert bad.returncode == 2 and '--keep-best needs --metric' in bad.stderr
    torch_file(tmp_path / 'epoch=5-step=50-val_loss=0.20.ckpt', mtime=NOW)
    bare = run()
    assert bare.returncode == 2 and 'give at least one of --keep-last' in bare.stderr
    assert len(os.listdir(tmp_path)) == 2, 'no rule given: nothing deleted'
    assert run('--dry-run').returncode == 0


# --- properties over random checkpoint sets and policies -----------------------------------------

entries = st.lists(
    st.tuples(
        st.sampled_from(['complete', 'complete', 'complete', 'truncated', 'temp', 'empty']),
        st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0, allow_nan=False)),
        # Seconds before NOW: recent (a partial one may still be being written, so it must be
        # skipped) or old (a partial one older than the newest complete is a crash leftover).
        st.one_of(st.floats(0.0, 250.0), st.floats(7200.0, 30 * 86400.0)),
    ),
    min_size=1,
    max_size=12,
)
policies = st.builds(
    lambda last, best, every, within, protect: (last, best, every, within, protect),
    st.one_of(st.none(), st.integers(1, 4)),
    st.one_of(st.none(), st.tuples(st.integers(1, 3), st.sampled_from(['min', 'max']))),
    st.one_of(st.none(), st.sampled_from([2, 3, 5])),
    st.one_of(st.none(), st.sampled_from([5.0, 50.0, 86400.0])),
    st.lists(st.integers(0, 11), max_size=3),
)
MIN_PARTIAL_AGE = 3600.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries, policies, st.booleans(), st.integers(0, 11))
def test_invariants_hold_for_random_sets(tmp_path_factory, specs, policy_spec, with_link, link_to) -> None:
    root = tmp_path_factory.mktemp('prop')
    ckpts, outside = root / 'ckpts', root / 'outside'
    ckpts.mkdir()
    outside.mkdir()
    torch_file(outside / 'step=999-loss=0.0.ckpt')
    os.symlink(outside / 'step=999-loss=0.0.ckpt', ckpts / 'escape.ckpt')
    names, mtimes = [], {}
    for i, (kind, loss, age) in enumerate(specs):
        metric = '' if loss is None else f'-loss={loss:.3f}'
        name = f'step={i * 10}{metric}.ckpt' + ('.tmp' if kind == 'temp' else '')
        path = ckpts / name
        if kind == 'empty':
            path.write_bytes(b'')
        else:
            torch_file(path, complete=kind != 'truncated', size=200)
        os.utime(path, (NOW - age, NOW - age))
        names.append((name, kind))
        mtimes[name] = NOW - age
    linked = names[link_to][0] if with_link and link_to < len(names) else None
    if linked:
        os.symlink(linked, ckpts / 'last.ckpt')
    last, best, every, within, protect = policy_spec
    rules: list = []
    if last:
        rules.append(KeepLast(last))
    if best:
        rules.append(KeepBest(best[0], 'loss', mode=best[1]))
    if every:
        rules.append(KeepEvery(every * 10))
    if within:
        rules.append(KeepWithin(within))
    protected = {names[i][0] for i in protect if i < len(names)}
    if protected:
        rules.append(Protect(*sorted(protected)))
    policy = RetentionPolicy(*rules, min_partial_age=MIN_PARTIAL_AGE)

    carries_metric = any(loss is not None for _, loss, _ in specs)
    complete_by_name = any(kind in ('complete', 'truncated') for kind, _, _ in specs)
    if best and not carries_metric and complete_by_name:
        with pytest.raises(ValueError, match="metric='loss'"):
            plan(ckpts, policy, now=NOW)
        shutil.rmtree(root)
        return

    # Ages are random, so steps and write times disagree at random: this models the step reading
    # (test_generations_* check the other readings).
    first = plan(ckpts, policy, now=NOW, order='step')
    again = plan(ckpts, policy, now=NOW, order='step')
    assert [(str(i.name), i.action, i.reasons) for i in first.items] == [
        (str(i.name), i.action, i.reasons) for i in again.items
    ], 'the plan is deterministic'

    complete = [n for n, k in names if k == 'complete']
    newest = complete[-1] if complete else None  # names are ordered by step, newest last
    newest_at = names.index((newest, 'complete')) if newest else -1
    keepers = set(protected) | ({newest} if newest else set()) | ({linked} if linked else set())
    # A partial save is a crash leftover only when older than the newest complete checkpoint (in
    # order and in time) and than min_partial_age; every other partial save is left alone.
    leftovers, in_flight = set(), set()
    for at, (name, kind) in enumerate(names):
        if kind == 'complete' or name in keepers:
            continue
        abandoned = at < newest_at and mtimes[name] < mtimes[newest] and mtimes[name] < NOW - MIN_PARTIAL_AGE
        if abandoned and kind in ('temp', 'empty'):
            leftovers.add(name)  # partial by name: known without reading it
        elif not abandoned and (kind != 'truncated' or NOW - mtimes[name] < 300):
            in_flight.add(name)  # truncated and older than 5 minutes: unread unless a rule asks
    before = set(os.listdir(ckpts))
    apply(first)
    after = set(os.listdir(ckpts))
    assert keepers | in_flight <= after, (keepers | in_flight) - after
    assert not leftovers & after, f'crash leftovers not deleted: {leftovers & after}'
    assert before - after == {str(i.name) for i in first.items if i.action == 'delete'}
    assert {'escape.ckpt'} <= after and (outside / 'step=999-loss=0.0.ckpt').exists(), (
        'nothing outside touched'
    )
    assert not any(
        i.action == 'keep' and not i.complete and str(i.name) not in keepers for i in first.items
    ), 'partial saves never count as kept (unless the caller protects them)'
    shutil.rmtree(root)


names = st.text(
    alphabet=st.characters(blacklist_categories=('Cs',), blacklist_characters='/\x00'),
    min_size=1,
    max_size=40,
).filter(lambda n: n not in ('.', '..'))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(names, st.sampled_from(['.ckpt', '.pt', '.safetensors', '', '.tmp'])),
        max_size=10,
        unique=True,
    )
)
def test_any_names_plan_and_apply_without_error(tmp_path_factory, entries) -> None:
    root = tmp_path_factory.mktemp('names')
    made = set()
    for i, (stem, ext) in enumerate(entries):
        name = stem + ext
        if name in made or len(os.fsencode(name)) > 250:
            continue
        path = root / name
        torch_file(path, mtime=NOW - 3600 + i)
        made.add(name)
    p = plan(root, RetentionPolicy(KeepLast(1), KeepEvery(7)))
    assert {str(i.name) for i in p.items} <= made
    results = apply(p)
    assert all(outcome == 'deleted' for _, outcome, _ in results), results
    complete = [i for i in p.items if i.complete]
    assert len(results) >= len(complete) - 1 - sum(
        1 for i in complete if i.step is not None and i.step % 7 == 0
    )
    assert set(os.listdir(root)) == made - {os.path.basename(path) for path, _, _ in results}
    shutil.rmtree(root)


def test_checkpoint_directory_with_a_mount_inside_is_left_whole(tmp_path: Path) -> None:
    from conftest import mounted_tmpfs

    old = tmp_path / 'checkpoint-100'
    (old / 'shards').mkdir(parents=True)
    (old / 'trainer_state.json').write_text('{}')
    (old / 'optimizer.pt').write_bytes(b'x' * 100)
    new = tmp_path / 'checkpoint-200'
    new.mkdir()
    (new / 'trainer_state.json').write_text('{}')
    os.utime(old, (NOW - 100, NOW - 100))
    with mounted_tmpfs(old / 'shards', size='1m', nr_inodes=None) as shards:
        (shards / 'data.bin').write_bytes(b'y' * 10)
        p = plan(tmp_path, RetentionPolicy(KeepLast(1)))
        assert actions(p) == {'checkpoint-100': 'delete', 'checkpoint-200': 'keep'}
        [(_path, outcome, detail)] = apply(p)
        assert outcome == 'failed' and 'cross-device' in detail.lower(), detail
        assert (old / 'optimizer.pt').exists() and (shards / 'data.bin').exists(), 'nothing half-deleted'


# --- the temp dir may be a symlink ---------------------------------------------------------------


def test_orphans_under_a_symlinked_temp_dir_are_removed(tmp_path: Path, monkeypatch) -> None:
    ckpts, real_temp = tmp_path / 'ckpts', tmp_path / 'private-tmp'
    ckpts.mkdir()
    real_temp.mkdir()
    link = tmp_path / 'tmp'
    os.symlink(real_temp, link)  # $TMPDIR -> the real directory, as in many containers
    old = NOW - 7200
    torch_file(real_temp / 'tmpab12cd34', mtime=old)
    (real_temp / 'tmp-checkpoint-9').mkdir()
    os.utime(real_temp / 'tmp-checkpoint-9', (old, old))
    monkeypatch.setenv('TMPDIR', str(link))
    monkeypatch.setattr(tempfile, 'tempdir', None)
    assert tempfile.gettempdir() == str(link)
    found = diskguard.find_orphans(ckpts)
    assert sorted(Path(o.path).name for o in found) == ['tmp-checkpoint-9', 'tmpab12cd34']
    assert all(Path(o.path).parent == link for o in found)
    results = diskguard.remove_orphans(found)
    assert [o for _, o, _ in results] == ['deleted', 'deleted'], results
    assert os.listdir(real_temp) == [] and link.is_symlink()


def test_orphan_in_a_directory_replaced_since_it_was_found_is_left_alone(tmp_path: Path) -> None:
    ckpts, temp = tmp_path / 'ckpts', tmp_path / 'tmp'
    ckpts.mkdir()
    temp.mkdir()
    (temp / 'step=5.ckpt.tmp').write_bytes(b'x' * 10)
    os.utime(temp / 'step=5.ckpt.tmp', (NOW - 7200, NOW - 7200))
    [orphan] = diskguard.find_orphans(ckpts, temp_dir=temp)
    temp.rename(tmp_path / 'old-tmp')
    other = tmp_path / 'other'
    other.mkdir()
    os.link(tmp_path / 'old-tmp' / 'step=5.ckpt.tmp', other / 'step=5.ckpt.tmp')
    os.symlink(other, temp)  # same path, same file (hard link), another directory
    [(_, outcome, detail)] = diskguard.remove_orphans([orphan])
    assert outcome == 'skipped' and 'replaced' in detail
    assert (other / 'step=5.ckpt.tmp').exists()


# --- pickling ------------------------------------------------------------------------------------


def test_rules_policies_plans_and_results_pickle(tmp_path: Path) -> None:
    rules = [
        KeepLast(3),
        KeepBest(2, 'val_loss', mode='max', values={tmp_path / 'a.ckpt': 0.5}),
        KeepBest(1, 'acc'),
        KeepEvery(1000),
        KeepWithin(3600),
        Protect('a.ckpt', tmp_path / 'b.ckpt'),
    ]
    policy = RetentionPolicy(*rules, min_partial_age=60, patterns=['*.npz'])
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        for obj in [*rules, policy]:
            back = pickle.loads(pickle.dumps(obj, protocol=proto))
            assert back == obj and hash(back) == hash(obj) and repr(back) == repr(obj), (proto, obj)
            assert type(back) is type(obj)
    assert KeepLast(3) != KeepLast(4) and KeepLast(3) != KeepEvery(3)
    assert len({KeepLast(3), KeepLast(3), KeepWithin(1.0)}) == 2
    assert repr(policy).startswith("RetentionPolicy(KeepLast(3), KeepBest(2, 'val_loss', mode='max', values=")
    assert policy.rules[1].values == {'a.ckpt': 0.5} and policy.patterns == ('*.npz',)

    for s in range(3):
        torch_file(tmp_path / f'step={s}-acc=0.{s}.ckpt', mtime=NOW - 10 + s)
    p = plan(tmp_path, RetentionPolicy(KeepLast(1)))
    back = pickle.loads(pickle.dumps(p))
    assert [(i.name, i.action, i.reasons, i.path, i.size, i.metrics) for i in back.items] == [
        (i.name, i.action, i.reasons, i.path, i.size, i.metrics) for i in p.items
    ]
    item = pickle.loads(pickle.dumps(p.items[0]))
    assert (item.name, item.action, item.complete, item.mtime) == (
        p.items[0].name,
        'delete',
        True,
        p.items[0].mtime,
    )
    applied = apply(back)  # a plan sent to another process still applies, re-checked as usual
    assert [o for _, o, _ in applied] == ['deleted', 'deleted']
    assert os.listdir(tmp_path) == ['step=2-acc=0.2.ckpt']


def test_records_and_errors_pickle(tmp_path: Path, tmpfs: Path) -> None:
    busy = DirectoryBusyError('"/x" is being pruned by another process (its lock is held by pid 7)')
    back = pickle.loads(pickle.dumps(busy))
    assert type(back) is DirectoryBusyError and str(back) == str(busy)
    (tmp_path / 'step=1.ckpt.tmp').write_bytes(b'x')
    os.utime(tmp_path / 'step=1.ckpt.tmp', (NOW - 7200, NOW - 7200))
    [orphan] = diskguard.find_orphans(tmp_path, include_temp_dir=False)
    orphan_back = pickle.loads(pickle.dumps(orphan))
    assert orphan_back == orphan and orphan_back._identity == orphan._identity
    assert diskguard.remove_orphans([orphan_back])[0][1] == 'deleted'
    result = diskguard.free_space(tmpfs, target_bytes=0)
    assert pickle.loads(pickle.dumps(result)) == result and result.met


# --- hostile inputs ------------------------------------------------------------------------------


def test_a_pattern_string_is_one_pattern_never_its_characters(tmp_path: Path) -> None:
    (tmp_path / 'notes.txt').write_text('keep me')
    (tmp_path / 'train.py').write_text('print()')
    for s in range(3):
        (tmp_path / f'w-{s}.npz').write_bytes(b'x' * 10)
        os.utime(tmp_path / f'w-{s}.npz', (NOW - 10 + s, NOW - 10 + s))
    policy = RetentionPolicy(KeepLast(1), patterns='*.npz')
    assert policy.patterns == ('*.npz',)
    p = plan(tmp_path, policy)
    assert actions(p) == {'w-0.npz': 'delete', 'w-1.npz': 'delete', 'w-2.npz': 'keep'}
    apply(p)
    assert sorted(os.listdir(tmp_path)) == ['notes.txt', 'train.py', 'w-2.npz']
    for bad in ['*', '*.*', '', '?', 'sub/*.npz']:
        with pytest.raises(ValueError, match=r'^patterns=.*at least one character other than'):
            RetentionPolicy(KeepLast(1), patterns=[bad])
    with pytest.raises(TypeError, match=r'^patterns=b'):
        RetentionPolicy(KeepLast(1), patterns=b'*.npz')  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r'^patterns=\[1\]'):
        RetentionPolicy(KeepLast(1), patterns=[1])  # type: ignore[list-item]


def test_a_time_that_is_not_finite_is_rejected_before_anything_is_planned(tmp_path: Path) -> None:
    for s in range(3):
        torch_file(tmp_path / f'step={s}.ckpt', mtime=NOW - 60 + s)
    policy = RetentionPolicy(KeepWithin(3600))
    for bad in (float('nan'), float('inf'), -1.0):
        with pytest.raises(ValueError, match=r'^now=(NaN|inf|-1): expected a finite time'):
            plan(tmp_path, policy, now=bad)
    with pytest.raises(TypeError, match=r"^now='now'"):
        plan(tmp_path, policy, now='now')  # type: ignore[arg-type]
    assert set(actions(plan(tmp_path, policy, now=NOW)).values()) == {'keep'}
    # Milliseconds would make a save still being written look like a crash leftover.
    with pytest.raises(
        ValueError, match=r's ahead of this machine.s clock; expected seconds since the epoch'
    ):
        plan(tmp_path, policy, now=time.time() * 1000)


def test_a_metric_no_checkpoint_carries_is_an_error_naming_the_ones_that_do(tmp_path: Path) -> None:
    for s in range(1, 4):
        torch_file(tmp_path / f'step={s}-val_loss={1 / s:.2f}.ckpt', mtime=NOW - 10 + s)
    with pytest.raises(ValueError, match=r"^metric='val_los': .*metrics in the names: val_loss"):
        plan(tmp_path, RetentionPolicy(KeepBest(2, 'val_los')))
    given = KeepBest(1, 'val_los', values={'step=1-val_loss=1.00.ckpt': 0.0})
    assert actions(plan(tmp_path, RetentionPolicy(given)))['step=1-val_loss=1.00.ckpt'] == 'keep'
    prune = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'prune', str(tmp_path), '--keep-best', '1', '--metric', 'nope'],
        capture_output=True,
        text=True,
        check=False,
    )
    assert prune.returncode == 2, prune
    assert (
        prune.stderr.count('\n') == 1 and "metric='nope'" in prune.stderr and 'Traceback' not in prune.stderr
    )
    assert len(os.listdir(tmp_path)) == 3


def test_a_policy_must_be_a_retention_policy(tmp_path: Path) -> None:
    torch_file(tmp_path / 'step=1.ckpt', mtime=NOW - 20)
    torch_file(tmp_path / 'step=2.ckpt', mtime=NOW - 10)
    for bad in ([], (), KeepLast(1), 'KeepLast(1)'):
        with pytest.raises(TypeError, match=r'^policy=.*: expected a RetentionPolicy'):
            plan(tmp_path, bad)  # type: ignore[arg-type]
    assert len(plan(tmp_path, None)) == 2


def test_a_protected_path_outside_the_directory_is_rejected_not_ignored(tmp_path: Path, monkeypatch) -> None:
    ckpts = tmp_path / 'ckpts'
    ckpts.mkdir()
    for s in range(3):
        torch_file(ckpts / f'step={s}.ckpt', mtime=NOW - 10 + s)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    with pytest.raises(ValueError, match=r'^protect=.*its directory is another one'):
        plan(ckpts, RetentionPolicy(KeepLast(1), Protect(elsewhere / 'step=0.ckpt')))
    with pytest.raises(ValueError, match=r'^protect=.*cannot be examined'):
        plan(ckpts, RetentionPolicy(KeepLast(1), Protect(tmp_path / 'missing' / 'step=0.ckpt')))
    monkeypatch.chdir(tmp_path)
    os.symlink(ckpts, tmp_path / 'alias')
    by_path = RetentionPolicy(KeepLast(1), Protect('alias/step=0.ckpt', 'step=1.ckpt'))
    a = actions(plan(ckpts, by_path))
    assert a == {'step=0.ckpt': 'keep', 'step=1.ckpt': 'keep', 'step=2.ckpt': 'keep'}
    for bad in ('', '..', 'ckpts/..', '.'):
        with pytest.raises(ValueError, match=r'^protect='):
            Protect(bad)


@pytest.mark.parametrize(
    ('make', 'error', 'message'),
    [
        (lambda: KeepLast(True), TypeError, r'^keep_last=True: expected a whole number \(int\), got bool'),
        (lambda: KeepLast(1.0), TypeError, r'^keep_last=1\.0: expected a whole number'),
        (lambda: KeepLast(-1), ValueError, r'^keep_last=-1: expected a whole number from 0'),
        (lambda: KeepLast(2**64), ValueError, r'^keep_last=18446744073709551616: expected a whole number'),
        (lambda: KeepLast(0), ValueError, r'^keep_last=0: expected at least 1'),
        (lambda: KeepEvery(0), ValueError, r'^keep_every=0: expected a step interval'),
        (lambda: KeepEvery('10'), TypeError, r"^keep_every='10': expected a whole number"),
        (lambda: KeepBest(False, 'loss'), TypeError, r'^keep_best=False'),
        (lambda: KeepBest(1, 5), TypeError, r'^metric=5: expected a str'),
        (lambda: KeepBest(1, ''), ValueError, r"^metric='': expected the metric's name"),
        (lambda: KeepBest(1, 'loss', mode='avg'), ValueError, r"^mode='avg': expected 'min'"),
        (lambda: KeepBest(1, 'loss', values=[1]), TypeError, r'^values=\[1\]: expected a mapping'),
        (lambda: KeepBest(1, 'loss', values={'a': float('nan')}), ValueError, r'^values=.*expected a finite'),
        (lambda: KeepBest(1, 'loss', values={'a': True}), TypeError, r'^values=True'),
        (lambda: KeepWithin(float('nan')), ValueError, r'^keep_within=NaN: expected a finite, positive'),
        (lambda: KeepWithin(float('inf')), ValueError, r'^keep_within=inf'),
        (lambda: KeepWithin(-5), ValueError, r'^keep_within=-5'),
        (lambda: KeepWithin(True), TypeError, r'^keep_within=True'),
        (lambda: Protect(5), TypeError, r'^protect=5: expected a path \(str, bytes or os.PathLike\)'),
        (lambda: RetentionPolicy(min_partial_age=float('nan')), ValueError, r'^min_partial_age=NaN'),
        (lambda: RetentionPolicy(min_partial_age=-1), ValueError, r'^min_partial_age=-1'),
        (lambda: RetentionPolicy(min_partial_age=True), TypeError, r'^min_partial_age=True'),
        (lambda: diskguard.find_orphans('.', min_age=float('nan')), ValueError, r'^min_age=NaN'),
        (lambda: diskguard.find_orphans('.', min_age=-1), ValueError, r'^min_age=-1'),
        (lambda: diskguard.find_orphans('.', min_age='1h'), TypeError, r"^min_age='1h'"),
        (lambda: apply('plan'), TypeError, r"^plan='plan': expected a RetentionPlan"),
        (lambda: plan(5), TypeError, r'^directory=5: expected a path'),
        (lambda: diskguard.find_orphans('.', temp_dir=5), TypeError, r'^temp_dir=5: expected a path'),
        (
            lambda: diskguard.free_space('.', target_bytes=1, wait=1),
            TypeError,
            r'^wait=1: expected True or False',
        ),
    ],
)
def test_bad_arguments_name_the_argument_the_value_and_what_is_allowed(make, error, message) -> None:
    with pytest.raises(error, match=message):
        make()


def test_lock_wait_options_are_checked_and_a_timeout_is_honoured(tmp_path: Path) -> None:
    for s in range(3):
        torch_file(tmp_path / f'step={s}.ckpt', mtime=NOW - 10 + s)
    p = plan(tmp_path, RetentionPolicy(KeepLast(1)))
    with pytest.raises(ValueError, match=r'^timeout=NaN'):
        apply(p, timeout=float('nan'))
    with pytest.raises(ValueError, match=r'^timeout=1: expected None with wait=False'):
        apply(p, wait=False, timeout=1)
    with pytest.raises(TypeError, match=r'^wait=0: expected True or False'):
        apply(p, wait=0)  # type: ignore[arg-type]
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLD_LOCK, str(tmp_path), '3'], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == 'locked'
        started = time.monotonic()
        with pytest.raises(DirectoryBusyError, match=rf'held by pid {holder.pid}\)'):
            apply(p, timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 2.5
        assert len(os.listdir(tmp_path)) == 3
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def run_prune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, '-m', 'diskguard', 'prune', *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


def test_prune_says_who_holds_the_lock_and_never_waits_silently(tmp_path: Path) -> None:
    for s in range(3):
        torch_file(tmp_path / f'step={s}.ckpt', mtime=NOW - 10 + s)
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLD_LOCK, str(tmp_path), '2'], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == 'locked'
        refused = run_prune(str(tmp_path), '--keep-last', '1', '--no-wait')
        assert refused.returncode == 3, refused
        assert refused.stderr.count('\n') == 1 and f'held by pid {holder.pid}' in refused.stderr
        bounded = run_prune(str(tmp_path), '--keep-last', '1', '--timeout', '0.2')
        assert bounded.returncode == 3 and 'waiting up to 0.2 s' in bounded.stderr, bounded
        assert 'Traceback' not in refused.stderr + bounded.stderr
        assert len(os.listdir(tmp_path)) == 3
        waited = run_prune(str(tmp_path), '--keep-last', '1')
        assert waited.returncode == 0, waited
        assert f'held by pid {holder.pid}' in waited.stderr and 'waiting as long as it takes' in waited.stderr
        assert os.listdir(tmp_path) == ['step=2.ckpt']
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    both = run_prune(str(tmp_path), '--keep-last', '1', '--no-wait', '--timeout', '1')
    assert both.returncode == 2 and 'not allowed with argument' in both.stderr


def test_prune_reports_non_utf8_names_after_deleting_them(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b'/bad-\xff-step=1.ckpt'
    torch_file(tmp_path / 'seed.ckpt', mtime=NOW - 100)
    os.rename(tmp_path / 'seed.ckpt', raw)
    torch_file(tmp_path / 'step=2.ckpt', mtime=NOW - 10)
    env = {**os.environ, 'PYTHONIOENCODING': 'utf-8', 'LC_ALL': 'C.UTF-8'}
    done = run_prune(str(tmp_path), '--keep-last', '1', env=env)
    assert done.returncode == 0, done
    assert 'bad-\\xff-step=1.ckpt' in done.stdout and 'Traceback' not in done.stderr
    assert any(line.startswith('deleted') and 'bad-\\xff' in line for line in done.stdout.splitlines())
    assert not os.path.exists(raw) and os.listdir(tmp_path) == ['step=2.ckpt']
    as_json = run_prune(str(tmp_path), '--keep-last', '1', '--json', env=env)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)['results'] == []


def test_prune_errors_are_one_line_and_exit_2_or_3(tmp_path: Path) -> None:
    usage_errors = [
        ('--keep-last', '0'),
        ('--keep-last', '-1'),
        ('--keep-within', 'nan'),
        ('--keep-every', '0'),
    ]
    for args in usage_errors:
        done = run_prune(str(tmp_path), *args)
        assert done.returncode == 2 and done.stderr.count('\n') == 1, (args, done)
        assert done.stderr.startswith('diskguard: error: ') and 'Traceback' not in done.stderr
    # A directory that does not exist is a usage error, as in every subcommand but `check` (README's table).
    missing = run_prune(str(tmp_path / 'missing'), '--keep-last', '1')
    assert missing.returncode == 2 and 'no such directory' in missing.stderr, missing
    root = run_prune('/', '--keep-last', '1')
    assert root.returncode == 2 and 'root directory' in root.stderr, root


# --- properties over the argument space ----------------------------------------------------------

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.text(max_size=4), st.floats(), max_size=2),
    st.tuples(st.text(max_size=4)),
)
CALLS = {
    'KeepLast': lambda d, a, b: KeepLast(a),
    'KeepBest': lambda d, a, b: KeepBest(a, b),
    'KeepBest mode/values': lambda d, a, b: KeepBest(1, 'loss', mode=a, values=b),
    'KeepEvery': lambda d, a, b: KeepEvery(a),
    'KeepWithin': lambda d, a, b: KeepWithin(a),
    'Protect': lambda d, a, b: plan(d, RetentionPolicy(Protect(a, b))),
    'RetentionPolicy': lambda d, a, b: RetentionPolicy(KeepLast(1), min_partial_age=a, patterns=b),
    'plan policy/now': lambda d, a, b: plan(d, a, now=b),
    'plan now': lambda d, a, b: plan(d, RetentionPolicy(KeepWithin(60)), now=a),
    'free_space': lambda d, a, b: diskguard.free_space(d, target_bytes=a, target_fraction=b),
    'free_space policy': lambda d, a, b: diskguard.free_space(d, a, target_bytes=b),
    'find_orphans': lambda d, a, b: diskguard.find_orphans(d, temp_dir=a, min_age=b),
    'apply': lambda d, a, b: apply(a, timeout=b),
    'apply wait': lambda d, a, b: apply(plan(d), wait=a, timeout=b),
    'plan directory': lambda d, a, b: plan(a),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(CALLS)), anything, anything)
def test_any_argument_gets_a_typed_error_or_an_answer(tmp_path: Path, call: str, a, b) -> None:
    """No panic, crash or stray exception type for any argument; the newest checkpoint survives."""
    torch_file(tmp_path / 'step=1-loss=0.5.ckpt', mtime=NOW - 10)  # only the invariant: nothing deletable
    try:
        CALLS[call](tmp_path, a, b)
    except (TypeError, ValueError) as err:
        assert re.match(r'^[a-z_]+=', str(err)), (call, a, b, str(err))
    except (OSError, DiskGuardError):
        pass
    assert (tmp_path / 'step=1-loss=0.5.ckpt').exists()
