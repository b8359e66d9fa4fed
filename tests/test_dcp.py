"""Sharded and asynchronous checkpoints: DCP directories and the layouts of the frameworks that
write them (recognised by retention and ``latest_complete``), guarded DCP saves, and the ranks
deciding a save together."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskguard
import pytest
from conftest import mounted_tmpfs
from diskguard import KeepLast, RetentionPolicy

# CI runs these on the interpreter that has torch (the test extra) and deselects them elsewhere
# with -m 'not torch', where the imports below must not break collection.
pytestmark = pytest.mark.torch
torch = pytest.importorskip('torch', reason='the DCP tests need torch: pip install -e .[test]')
import torch.distributed.checkpoint as dcp
from diskguard import dcp as guarded

ROOT = Path(__file__).resolve().parent.parent

# ----- layouts built as each framework's source writes them -----


def dcp_dir(path: Path, scale: int = 1) -> Path:
    """A real DCP checkpoint (one process): shards ``__0_0.distcp`` then ``.metadata``."""
    state = {'model': {'w': torch.arange(64 * scale, dtype=torch.float32)}, 'step': 3}
    with warnings.catch_warnings():  # DCP warns that it saves from a single process: it does
        warnings.simplefilter('ignore', UserWarning)
        dcp.save(state, checkpoint_id=str(path), no_dist=True)
    return path


def shard(path: Path) -> Path:
    return next(p for p in path.iterdir() if p.suffix == '.distcp')


def latest_name(path: Path) -> str | None:
    found = diskguard.latest_complete(path)
    return None if found is None else Path(found).name


def reasons(path: Path) -> dict[str, str | None]:
    return {i.name: i.incomplete_reason for i in diskguard.plan(path).items}


def test_dcp_directory_is_complete_only_when_metadata_names_files_that_exist_with_their_sizes(
    tmp_path: Path,
) -> None:
    # torch/distributed/checkpoint/filesystem.py: _FileSystemWriter.finish pickles Metadata whose
    # storage_data maps each item to _StorageInfo(relative_path, offset, length).
    for step in (100, 200, 300):
        dcp_dir(tmp_path / f'step-{step}')
    assert latest_name(tmp_path) == 'step-300'
    cut = shard(tmp_path / 'step-300')
    cut.write_bytes(cut.read_bytes()[:-9])  # a shard cut short (ENOSPC mid-write, then a rename)
    assert latest_name(tmp_path) == 'step-200'
    shard(tmp_path / 'step-200').unlink()  # a rank's shard never written
    assert latest_name(tmp_path) == 'step-100'
    why = reasons(tmp_path)
    assert 'records' in (why['step-300'] or '') and 'missing' in (why['step-200'] or ''), why
    # Retention deletes whole directories and never the newest complete one.
    decided = {i.name: i.action for i in diskguard.plan(tmp_path, RetentionPolicy(KeepLast(1))).items}
    assert decided['step-100'] == 'keep', decided
    diskguard.apply(diskguard.plan(tmp_path, RetentionPolicy(KeepLast(1))))
    assert (tmp_path / 'step-100' / '.metadata').exists() and shard(tmp_path / 'step-100').exists()


def test_a_metadata_file_that_is_not_dcp_metadata_or_cut_short_is_not_complete(tmp_path: Path) -> None:
    dcp_dir(tmp_path / 'step-1')
    bad = dcp_dir(tmp_path / 'step-2')
    data = (bad / '.metadata').read_bytes()
    (bad / '.metadata').write_bytes(data[: len(data) // 2])
    assert latest_name(tmp_path) == 'step-1'
    assert 'cut short' in (reasons(tmp_path)['step-2'] or '')
    # .metadata naming a path outside the checkpoint counts as missing, and is never followed.
    assert b'__0_0.distcp' in data
    (tmp_path / 'step-1' / '.metadata').write_bytes(data.replace(b'__0_0.distcp', b'../../etc/pw'))
    assert latest_name(tmp_path) is None
    assert 'missing' in (reasons(tmp_path)['step-1'] or '')


def test_lightning_sharded_checkpoint_is_complete_once_meta_pt_is_written(tmp_path: Path) -> None:
    # lightning/pytorch/strategies/fsdp.py FSDPStrategy.save_checkpoint (state_dict_type='sharded'):
    # path.mkdir(), _distributed_checkpoint_save(converted_state, path) (DCP), then on global rank 0
    # torch.save(checkpoint, path / _METADATA_FILENAME) with _METADATA_FILENAME = 'meta.pt'
    # (lightning/fabric/utilities/load.py). ModelParallelStrategy.save_checkpoint does the same.
    done = dcp_dir(tmp_path / 'epoch=0-step=10.ckpt')
    torch.save({'epoch': 0, 'global_step': 10}, done / 'meta.pt')
    dcp_dir(tmp_path / 'epoch=0-step=20.ckpt')  # the shards and .metadata, but no meta.pt yet
    assert latest_name(tmp_path) == 'epoch=0-step=10.ckpt'
    items = {i.name: i for i in diskguard.plan(tmp_path).items}
    assert items['epoch=0-step=20.ckpt'].format == 'dcp'
    assert 'meta.pt' in (items['epoch=0-step=20.ckpt'].incomplete_reason or '')
    assert items['epoch=0-step=10.ckpt'].step == 10


def accelerate_fsdp_dir(path: Path, *, finished: bool = True) -> Path:
    # src/accelerate/accelerator.py Accelerator.save_state: output_dir = checkpoint_<iteration>;
    # save_fsdp_model writes pytorch_model_fsdp_<i>/ and save_fsdp_optimizer optimizer_<i>/ with
    # dist_cp.save (src/accelerate/utils/fsdp_utils.py, SHARDED_STATE_DICT); then
    # save_accelerator_state writes scheduler.bin ... and random_states_<process>.pkl last
    # (src/accelerate/checkpointing.py).
    path.mkdir()
    dcp_dir(path / 'pytorch_model_fsdp_0')
    dcp_dir(path / 'optimizer_0', scale=2)
    torch.save({'last_epoch': 1}, path / 'scheduler.bin')
    if finished:
        torch.save({'step': 1}, path / 'random_states_0.pkl')
    return path


def test_accelerate_fsdp_checkpoints(tmp_path: Path) -> None:
    root = tmp_path / 'checkpoints'
    root.mkdir()
    accelerate_fsdp_dir(root / 'checkpoint_0')
    accelerate_fsdp_dir(root / 'checkpoint_1')
    accelerate_fsdp_dir(root / 'checkpoint_2', finished=False)
    assert latest_name(root) == 'checkpoint_1'
    cut = shard(root / 'checkpoint_1' / 'optimizer_0')
    cut.write_bytes(cut.read_bytes()[:-5])
    assert latest_name(root) == 'checkpoint_0'
    items = {i.name: i for i in diskguard.plan(root).items}
    assert {i.format for i in items.values()} == {'accelerate'}
    assert (items['checkpoint_0'].step, items['checkpoint_2'].step) == (0, 2)
    assert 'optimizer_0/' in (items['checkpoint_1'].incomplete_reason or '')
    assert 'random_states_0.pkl' in (items['checkpoint_2'].incomplete_reason or '')


def test_hugging_face_fsdp_checkpoint_checks_its_dcp_subdirectories(tmp_path: Path) -> None:
    # transformers Trainer under FSDP (SHARDED_STATE_DICT) saves through accelerate's
    # save_fsdp_model / save_fsdp_optimizer into checkpoint-<step>/, trainer_state.json last.
    for step in (10, 20):
        ckpt = tmp_path / f'checkpoint-{step}'
        ckpt.mkdir()
        dcp_dir(ckpt / 'pytorch_model_fsdp_0')
        dcp_dir(ckpt / 'optimizer_0')
        (ckpt / 'trainer_state.json').write_text('{}')
    assert latest_name(tmp_path) == 'checkpoint-20'
    shard(tmp_path / 'checkpoint-20' / 'pytorch_model_fsdp_0').unlink()
    assert latest_name(tmp_path) == 'checkpoint-10'


def deepspeed_dir(root: Path, step: int, dp: int = 2, *, skip_rank: int | None = None) -> Path:
    # deepspeed/runtime/engine.py save_checkpoint: tag 'global_step{N}'; _get_ckpt_name gives
    # mp_rank_{mp:02d}_model_states.pt, _get_zero_ckpt_name gives
    # zero_pp_rank_{dp}_mp_rank_{mp:02d}_optim_states.pt (bf16_ prefix for the bf16 optimizer);
    # rank 0 then writes the tag into save_dir/'latest' after checkpoint_engine.commit(tag).
    tag = root / f'global_step{step}'
    tag.mkdir()
    torch.save({'module': {'w': torch.ones(8)}}, tag / 'mp_rank_00_model_states.pt')
    for rank in range(dp):
        if rank != skip_rank:
            torch.save({'optimizer_state_dict': {}}, tag / f'zero_pp_rank_{rank}_mp_rank_00_optim_states.pt')
    return tag


def test_deepspeed_tags_and_the_latest_file(tmp_path: Path) -> None:
    deepspeed_dir(tmp_path, 10)
    deepspeed_dir(tmp_path, 20)
    (tmp_path / 'latest').write_text('global_step20')
    deepspeed_dir(tmp_path, 30)  # written, but `latest` not yet updated: the save did not commit
    deepspeed_dir(tmp_path, 40, skip_rank=0)  # a gap in the data-parallel ranks
    assert latest_name(tmp_path) == 'global_step20'
    items = {i.name: i for i in diskguard.plan(tmp_path).items}
    assert set(items) == {'global_step10', 'global_step20', 'global_step30', 'global_step40'}
    assert items['global_step20'].format == 'deepspeed' and items['global_step20'].step == 20
    assert 'latest' in (items['global_step30'].incomplete_reason or '')
    assert 'zero_pp_rank_0' in (items['global_step40'].incomplete_reason or '')
    # A truncated model-states zip: not complete.
    model = tmp_path / 'global_step20' / 'mp_rank_00_model_states.pt'
    model.write_bytes(model.read_bytes()[:-30])
    assert latest_name(tmp_path) == 'global_step10'


def test_deepspeed_latest_protects_the_tag_it_names(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        deepspeed_dir(tmp_path, step)
    (tmp_path / 'latest').write_text('global_step20\n')
    os.utime(tmp_path / 'global_step30')
    decided = {i.name: i.action for i in diskguard.plan(tmp_path, RetentionPolicy(KeepLast(1))).items}
    # global_step30 is newer than `latest` (not committed), global_step20 is what `latest` names.
    assert decided['global_step20'] == 'keep'
    assert decided['global_step10'] == 'delete'
    diskguard.apply(diskguard.plan(tmp_path, RetentionPolicy(KeepLast(1))))
    assert (tmp_path / 'global_step20' / 'mp_rank_00_model_states.pt').exists()
    assert (tmp_path / 'latest').read_text() == 'global_step20\n'


def test_a_fifo_or_a_symlink_in_a_layout_never_hangs_or_is_followed(tmp_path: Path) -> None:
    done = dcp_dir(tmp_path / 'step-1')
    other = dcp_dir(tmp_path / 'step-2')
    os.unlink(other / '.metadata')
    os.mkfifo(other / '.metadata')
    assert latest_name(tmp_path) == 'step-1'
    (tmp_path / 'latest').symlink_to('/etc/hostname')
    deepspeed_dir(tmp_path, 5)
    assert latest_name(tmp_path) == 'global_step5'
    assert done.exists()


@pytest.mark.parametrize('format_name', ['deepspeed', 'accelerate'])
def test_new_formats_are_named_in_the_plan(tmp_path: Path, format_name: str) -> None:
    if format_name == 'deepspeed':
        deepspeed_dir(tmp_path, 1)
    else:
        accelerate_fsdp_dir(tmp_path / 'checkpoint_0')
    (item,) = diskguard.plan(tmp_path).items
    assert item.format == format_name and item.complete


# ----- guarded saves, one process -----


def small_state(n: int = 64 * 1024) -> dict[str, Any]:
    return {'model': {'w': torch.ones(n)}, 'step': 1}


def quiet_save(*args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():  # DCP warns that it saves from a single process: it does
        warnings.simplefilter('ignore', UserWarning)
        return guarded.save(*args, **kwargs)


def test_a_guarded_save_publishes_a_complete_directory_by_rename(tmp_path: Path) -> None:
    guard = diskguard.DiskGuard(tmp_path, warn=None, critical=None, world_size=1, rank=0, local_rank=0)
    quiet_save(small_state(), checkpoint_id=tmp_path / 'step-1', guard=guard)
    assert sorted(os.listdir(tmp_path)) == ['step-1']
    assert latest_name(tmp_path) == 'step-1'
    assert (tmp_path / 'step-1' / '.metadata').is_file()
    loaded = {'model': {'w': torch.zeros(64 * 1024)}, 'step': 0}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        dcp.load(loaded, checkpoint_id=str(tmp_path / 'step-1'), no_dist=True)
    assert torch.equal(loaded['model']['w'], torch.ones(64 * 1024)) and loaded['step'] == 1
    # Saving again under the same name replaces it whole.
    quiet_save(small_state(1024), checkpoint_id=tmp_path / 'step-1', guard=guard)
    assert sorted(os.listdir(tmp_path)) == ['step-1']


def test_a_refused_save_writes_nothing_on_any_rank(tmpfs: Path) -> None:
    guard = diskguard.DiskGuard(
        tmpfs, warn=None, critical=None, on_full='stop', world_size=1, rank=0, local_rank=0
    )
    with pytest.raises(diskguard.InsufficientSpaceError, match='no rank writes'):
        quiet_save(small_state(8 << 20), checkpoint_id=tmpfs / 'step-1', guard=guard)  # 32 MiB > 16 MiB
    assert os.listdir(tmpfs) == []
    assert guard.should_stop


def test_enospc_mid_save_leaves_nothing_under_the_final_name(tmpfs: Path) -> None:
    dcp_dir(tmpfs / 'step-0')
    guard = diskguard.DiskGuard(tmpfs, warn=None, critical=None, world_size=1, rank=0, local_rank=0)
    with pytest.raises(BaseException) as caught:  # DCP's CheckpointException is a BaseException
        # 20 MiB on a 16 MiB tmpfs; the guard is not asked (a save it cannot see coming).
        quiet_save(small_state(5 << 20), checkpoint_id=tmpfs / 'step-1')
    (failed, _trace), *_ = caught.value.failures.values()  # type: ignore[attr-defined]
    assert isinstance(failed, OSError) and failed.errno == errno.ENOSPC, failed
    assert failed.filename.endswith('__0_0.distcp')
    assert guard.diagnose(failed) is not None
    assert sorted(os.listdir(tmpfs)) == ['step-0']
    assert latest_name(tmpfs) == 'step-0'


CRASH = """
import os, sys, warnings
import torch
warnings.simplefilter('ignore')
from diskguard import dcp as guarded
real_rename = os.rename
def rename(src, dst, *a, **k):
    if str(src).endswith('.diskguard-step-2.tmp') or sys.argv[2] == 'shard' and str(dst).endswith('.metadata'):
        os._exit(9)  # killed right before the publishing rename (or before .metadata)
    return real_rename(src, dst, *a, **k)
os.rename = rename
guarded.save({'w': torch.ones(1000)}, checkpoint_id=os.path.join(sys.argv[1], 'step-2'))
"""


@pytest.mark.parametrize('when', ['publish', 'shard'])
def test_a_crash_at_any_point_leaves_no_directory_under_the_final_name(tmp_path: Path, when: str) -> None:
    dcp_dir(tmp_path / 'step-1')
    out = subprocess.run(
        [sys.executable, '-c', CRASH, str(tmp_path), when], capture_output=True, timeout=120, check=False
    )
    assert out.returncode == 9, out.stderr.decode()[-2000:]
    assert sorted(os.listdir(tmp_path)) == ['.diskguard-step-2.tmp', 'step-1']
    assert latest_name(tmp_path) == 'step-1'
    items = {i.name: i for i in diskguard.plan(tmp_path).items}
    assert not items['.diskguard-step-2.tmp'].complete  # a partial save retention can clean up
    # The next save of that name starts from a clean staging directory.
    quiet_save({'w': torch.ones(10)}, checkpoint_id=tmp_path / 'step-2')
    assert sorted(os.listdir(tmp_path)) == ['step-1', 'step-2']


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match='checkpoint_id'):
        guarded.save(small_state())
    with pytest.raises(TypeError, match='storage_writer'):
        guarded.save(small_state(), storage_writer=dcp.FileSystemWriter(str(tmp_path)))
    with pytest.raises(ValueError, match='if_busy'):
        guarded.async_save(small_state(), checkpoint_id=tmp_path / 'x', if_busy='later')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='sync_files'):
        guarded.StagedWriter(tmp_path / 'x', sync_files=False)


# ----- 4 gloo ranks, FSDP2 fully_shard, real tmpfs -----


def torchrun(scenario: str, directory: Path, results: Path, nproc: int = 4) -> list[dict[str, Any]]:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', str(nproc),
        '--master-addr', '127.0.0.1', '--master-port', str(port),
        str(ROOT / 'tests' / 'dcp_worker.py'), scenario, str(directory), str(results),
    ]  # fmt: skip
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env, check=False)
    found = [json.loads(p.read_text()) for p in sorted(results.glob('rank-*.json'))]
    assert out.returncode == 0 and len(found) == nproc, (out.stdout + out.stderr)[-6000:]
    return sorted(found, key=lambda r: r['rank'])


@pytest.fixture
def shared_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs that holds about 3.5 of the workers' sharded checkpoints (6.3 MiB each)."""
    with mounted_tmpfs(tmp_path / 'shared', size='23m', nr_inodes=512) as where:
        yield where


@pytest.mark.timeout(300)
def test_four_ranks_fill_three_and_a_half_checkpoints_and_finish_with_retention(
    shared_tmpfs: Path, tmp_path: Path
) -> None:
    results = torchrun('retention', shared_tmpfs, tmp_path)
    for r in results:
        assert r['saved'] == list(range(1, 9)) and r['stopped_at'] is None, r
        assert r['latest'] == 'step-8' and r['resumed_equal'], r
    listing = results[0]['listing']
    assert not [n for n in listing if n.endswith('.tmp')], listing
    assert 'step-8' in listing and len([n for n in listing if n.startswith('step-')]) <= 3, listing


@pytest.mark.timeout(300)
def test_four_ranks_stop_at_the_same_step_when_another_process_fills_the_disk(
    shared_tmpfs: Path, tmp_path: Path
) -> None:
    results = torchrun('fill', shared_tmpfs, tmp_path)
    assert {r['stopped_at'] for r in results} == {4}, results
    assert all(r['should_stop'] and 'no rank writes' in r['error'] for r in results), results
    listing = results[0]['listing']
    # No rank wrote a shard of the refused save: neither its directory nor its staging exists.
    assert 'step-4' not in listing and '.diskguard-step-4.tmp' not in listing, listing
    assert results[0]['latest'] == 'step-3', results[0]


@pytest.mark.timeout(300)
def test_an_async_save_that_hits_enospc_is_surfaced_cleaned_and_resumed_from(
    shared_tmpfs: Path, tmp_path: Path
) -> None:
    results = torchrun('async', shared_tmpfs, tmp_path)
    assert len({r['stopped_at'] for r in results}) == 1, results  # every rank at the same step()
    for r in results:
        assert r['error'] is not None and r['should_stop'] and r['future_failed'], r
        assert 'No space left on device' in r['error'], r
        assert r['notes'] and '.distcp' in r['notes'][0], r  # the guard's diagnosis, naming the shard
        assert r['latest'] == 'step-1' and r['resumed_equal'], r
    listing = results[0]['listing']
    assert 'step-2' not in listing and '.diskguard-step-2.tmp' not in listing, listing


@pytest.mark.timeout(420)
def test_two_simulated_nodes_decide_local_room_per_node_shared_room_once_and_stop_together(
    shared_tmpfs: Path, tmp_path: Path
) -> None:
    """Two torchrun "nodes" (--nnodes 2, c10d rendezvous on loopback), each in its own mount
    namespace (unshare -m) with its own tmpfs at the same node-local path, plus the shared tmpfs."""
    if shutil.which('unshare') is None:
        pytest.skip('unshare (util-linux) is not installed')
    local = tmp_path / 'node-local'
    local.mkdir()
    results = tmp_path / 'results'
    results.mkdir()
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    torchrun = (
        f'{sys.executable} -m torch.distributed.run --nnodes 2 --node-rank {{node}} --nproc-per-node 2 '
        f'--rdzv-backend c10d --rdzv-endpoint 127.0.0.1:{port} --rdzv-id diskguard-{port} --max-restarts 0 '
        f'{ROOT / "tests" / "dcp_worker.py"} twonode {shared_tmpfs} {results} {local}'
    )
    script = f'mount -t tmpfs -o size=16m,nr_inodes=256 tmpfs {local} && exec {torchrun}'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    nodes = [
        subprocess.Popen(
            ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script.format(node=node)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    outputs = [p.communicate(timeout=400)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], '\n'.join(o[-4000:] for o in outputs)
    assert os.listdir(local) == []  # each node's tmpfs lived in its own namespace only
    ranks = sorted((json.loads(p.read_text()) for p in results.glob('rank-*.json')), key=lambda r: r['rank'])
    assert len(ranks) == 4, outputs
    for r in ranks:  # the run's record (pytest -s shows it)
        print(
            f'rank {r["rank"]} node {r["node"]} local_rank {r["local_rank"]} local_dev {r["local_dev"]}: '
            f'saved {r["saved"]}, stopped at {r["stopped_at"]}; asked the guard for shared room '
            f'{r["shared_asked"]}, node-local room {r["local_asked"]} (own bytes {r["local_bytes"]})'
        )
    by_node = {n: [r for r in ranks if r['node'] == n] for n in (0, 1)}
    # Same path, two filesystems: one per node.
    assert {r['local_dev'] for r in by_node[0]} != {r['local_dev'] for r in by_node[1]}
    # Both nodes stop at the same step, the one at which node 1's local disk was full.
    assert {r['stopped_at'] for r in ranks} == {4}, ranks
    assert all(r['should_stop'] and 'no rank writes' in r['error'] for r in ranks), ranks
    # Shared room decided once (rank 0, for every rank's bytes); local room once per node (its
    # first rank, for that node's ranks' bytes).
    total = sum(r['local_bytes'] for r in ranks)
    assert [len(r['shared_asked']) for r in ranks] == [4, 0, 0, 0], ranks
    assert ranks[0]['shared_asked'][0] == total
    for node, members in by_node.items():
        deciders = [r for r in members if r['local_asked']]
        assert len(deciders) == 1 and deciders[0]['local_rank'] == 0, (node, members)
        assert deciders[0]['local_asked'][0] == sum(r['local_bytes'] for r in members)
    # The refused save (the node-local one of step 4) was written by no rank on either node.
    for r in ranks:
        assert 'step-4' not in r['local_listing'] and 'step-3' in r['local_listing'], r
        assert not [n for n in r['local_listing'] if n.endswith('.tmp')], r
    assert not [n for n in ranks[0]['listing'] if n.endswith('.tmp')], ranks[0]


# ----- rescans off the training thread -----


def test_a_rescan_runs_off_the_check_and_its_result_lands_at_a_later_one(tmp_path: Path) -> None:
    """What another writer put in the directory is learnt from a rescan on the guard's own thread:
    not in the check that starts it, in one after it finished."""
    guard = diskguard.DiskGuard(tmp_path, warn=None, critical=None, rescan_interval=0.01)
    assert guard.status().held < 1 << 20
    (tmp_path / 'written-behind-its-back.bin').write_bytes(b'x' * (4 << 20))
    deadline = time.monotonic() + 30
    while guard.status().held < 4 << 20 and time.monotonic() < deadline:
        guard.check()
        time.sleep(0.01)  # polling a result that lands when the rescan thread finishes
    assert guard.status().held >= 4 << 20
    # A rescan that started before a save is dropped: the guard's own accounting is newer.
    guard.before_save(tmp_path / 'step-1', 1 << 20)
    (tmp_path / 'step-1').mkdir()
    (tmp_path / 'step-1' / 'w.bin').write_bytes(b'y' * (1 << 20))
    guard.after_save(tmp_path / 'step-1', 1 << 20)
    assert guard.status().held >= 5 << 20
