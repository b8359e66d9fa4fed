"""The Lightning callback with the real frameworks (``lightning`` and ``pytorch_lightning``), a tiny
model on CPU, and real tmpfs filesystems too small for every checkpoint.

A checkpoint of the model below (a 256x256 linear layer with its Adam state) is about 0.8 MB.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import importlib
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import mounted_tmpfs
from diskguard import DiskGuardError, DiskSpaceWarning, InsufficientSpaceError

torch = pytest.importorskip('torch', reason='the Lightning tests need torch: pip install -e .[test]')

from lightning_model import tiny_model

pytestmark = [
    pytest.mark.torch,
    # Lightning's advice about CPU runs (few dataloader workers, no GPU used) is beside the point here,
    # and the guard's DiskSpaceWarnings are expected: the disks are meant to fill.
    pytest.mark.filterwarnings('ignore::UserWarning'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning'),
    # Lightning 2.6 against a newer torch: a deprecation inside Lightning, not ours.
    pytest.mark.filterwarnings('ignore:.*LeafSpec.*:FutureWarning'),
]

FRAMEWORKS = ['lightning', 'pytorch_lightning']
CHECKPOINT_MB = 0.8


def framework(name: str) -> tuple[ModuleType, type]:
    """(the framework's pytorch package, its DiskGuardCallback), or a skip if it is not installed."""
    pl = pytest.importorskip('lightning.pytorch' if name == 'lightning' else name)
    return pl, importlib.import_module(f'diskguard.{name}').DiskGuardCallback


@pytest.fixture
def small_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``$TMPDIR`` on its own 512 KiB tmpfs: smaller than one checkpoint, as on a cramped HPC node."""
    with mounted_tmpfs(tmp_path / 'tmpdir', size='512k', nr_inodes=None) as where:
        monkeypatch.setenv('TMPDIR', str(where))
        monkeypatch.setattr(tempfile, 'tempdir', str(where))
        yield where


@contextlib.contextmanager
def checkpoint_disk(tmp_path: Path, megabytes: float) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` (MB of 10**6 bytes, as CHECKPOINT_MB) for the checkpoints."""
    with mounted_tmpfs(tmp_path / 'ckpt', size=f'{int(megabytes * 1e6 / 1024)}k', nr_inodes=None) as where:
        yield where


def trainer(pl: ModuleType, root: Path, callbacks: list[Any], **options: Any) -> Any:
    settings: dict[str, Any] = {
        'accelerator': 'cpu',
        'devices': 1,
        'logger': False,
        'enable_progress_bar': False,
        'enable_model_summary': False,
        'default_root_dir': str(root),
        'num_sanity_val_steps': 0,
        'limit_val_batches': 1,
    }
    settings.update(options)
    return pl.Trainer(callbacks=callbacks, **settings)


def assert_nothing_partial(*directories: Path) -> None:
    """Every file left is a whole checkpoint (it loads), and no temp file is left anywhere."""
    for directory in directories:
        for entry in directory.iterdir():
            # torch keeps its own cache directory (torchinductor_<user>) in $TMPDIR: not a checkpoint.
            assert not entry.name.startswith(('.diskguard-', 'tmp')), f'leftover temp file {entry}'
            if entry.suffix == '.ckpt':
                torch.load(entry, weights_only=False)


def assert_references_exist(checkpoint: Any) -> None:
    """ModelCheckpoint references no file that is not there."""
    referenced = [*checkpoint.best_k_models, checkpoint.best_model_path, checkpoint.last_model_path]
    referenced.append(checkpoint.kth_best_model_path)
    for path in filter(None, referenced):
        assert os.path.exists(path), f'ModelCheckpoint references {path}, which is gone'


# ----- importing and constructing -----


@pytest.mark.parametrize('name', FRAMEWORKS)
def test_importing_without_the_framework_names_the_package(name: str) -> None:
    package = 'lightning' if name == 'lightning' else 'pytorch_lightning'
    code = f'import sys; sys.modules[{package!r}] = None\nimport diskguard.{name}'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    install = 'pip install lightning' if name == 'lightning' else 'pip install pytorch-lightning'
    assert 'ImportError' in result.stderr and install in result.stderr


@pytest.mark.parametrize('name', FRAMEWORKS)
def test_subclasses_the_frameworks_own_callback(name: str) -> None:
    pl, callback_class = framework(name)
    assert isinstance(callback_class(), pl.Callback)
    other = 'pytorch_lightning' if name == 'lightning' else 'lightning.pytorch'
    assert not isinstance(callback_class(), importlib.import_module(other).Callback)


def test_unknown_options_are_refused_by_name() -> None:
    _, callback_class = framework('lightning')
    with pytest.raises(TypeError, match='stop_belw'):
        callback_class(stop_belw='10GiB')
    with pytest.raises(TypeError, match='rank'):
        callback_class(rank=1)  # comes from the Trainer
    with pytest.raises(TypeError, match='log_metrics=1'):
        callback_class(log_metrics=1)


def test_bad_option_values_fail_before_training(tmp_path: Path) -> None:
    pl, callback_class = framework('lightning')
    fit = trainer(pl, tmp_path, [callback_class(tmp_path / 'ckpt', warn=float('nan'))], max_steps=2)
    with pytest.raises(ValueError, match='warn'):
        fit.fit(tiny_model(pl))
    assert fit.global_step == 0


def test_pickles_with_configuration_only(tmp_path: Path) -> None:
    _, callback_class = framework('lightning')
    callback = callback_class(tmp_path, min_free='1MiB', check_every_steps=3)
    copy = pickle.loads(pickle.dumps(callback))
    assert copy.state_key == callback.state_key
    assert copy.guard is None  # built in on_fit_start, in the process that fits


def test_state_key_differs_per_path_so_two_callbacks_coexist(tmp_path: Path) -> None:
    pl, callback_class = framework('lightning')
    first, second = callback_class(tmp_path / 'a'), callback_class(tmp_path / 'b')
    assert first.state_key != second.state_key
    trainer(pl, tmp_path, [first, second])  # Lightning refuses two stateful callbacks with one key


# ----- the disk fills -----


@pytest.mark.timeout(240)
@pytest.mark.parametrize('on_full', ['prune', 'stop'])
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_save_top_k_all_on_a_small_disk(name: str, on_full: str, tmp_path: Path, small_tmpdir: Path) -> None:
    """Forty checkpoints on a disk for eight, $TMPDIR smaller than one: with ``on_full='prune'`` the
    guard deletes the oldest ones Lightning no longer references and the run completes; with
    ``'stop'`` it deletes nothing and stops, with room left for the saves Lightning makes after."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, 8 * CHECKPOINT_MB) as ckpt:
        checkpoint = pl.callbacks.ModelCheckpoint(
            dirpath=ckpt, save_top_k=-1, every_n_train_steps=1, save_last=True
        )
        fit = trainer(
            pl, tmp_path, [callback_class(check_every_steps=1, on_full=on_full), checkpoint], max_steps=40
        )
        fit.fit(tiny_model(pl))

        saved = sorted(ckpt.glob('epoch=*.ckpt'))
        if on_full == 'prune':
            assert fit.global_step == 40
            assert 3 <= len(saved) < 40
        else:
            assert 3 <= fit.global_step < 40, 'the run should stop before the disk is full'
            assert len(saved) == fit.global_step, 'nothing is deleted with on_full="stop"'
        assert_references_exist(checkpoint)
        assert os.path.exists(checkpoint.last_model_path)
        assert_nothing_partial(ckpt, small_tmpdir)
        last_step = torch.load(checkpoint.last_model_path, weights_only=False)['global_step']
        assert last_step == fit.global_step

        # What is left resumes, the callback's state restored from the checkpoint (weights_only).
        resumed = trainer(pl, tmp_path, [callback_class(check_every_steps=1), checkpoint], max_steps=41)
        resumed.fit(tiny_model(pl), ckpt_path=checkpoint.last_model_path)
        assert resumed.global_step >= last_step
        assert_nothing_partial(ckpt, small_tmpdir)


@pytest.mark.timeout(240)
def test_a_last_link_keeps_its_target(tmp_path: Path) -> None:
    """``save_last='link'``: last.ckpt is a symlink to the newest checkpoint, which pruning keeps."""
    pl, callback_class = framework('lightning')
    with checkpoint_disk(tmp_path, 6 * CHECKPOINT_MB) as ckpt:
        checkpoint = pl.callbacks.ModelCheckpoint(
            dirpath=ckpt, save_top_k=-1, every_n_train_steps=1, save_last='link'
        )
        fit = trainer(pl, tmp_path, [callback_class(check_every_steps=1), checkpoint], max_steps=20)
        fit.fit(tiny_model(pl))
        last = ckpt / 'last.ckpt'
        assert fit.global_step == 20 and last.is_symlink()
        assert torch.load(last, weights_only=False)['global_step'] == 20  # the target is there
        assert len(list(ckpt.glob('epoch=*.ckpt'))) < 20, 'older checkpoints were pruned'
        assert_references_exist(checkpoint)


class SaveEveryStep:
    """A callback (of either package) that calls ``trainer.save_checkpoint`` by hand after every
    training step, into ``directory``: a run that checkpoints without a ModelCheckpoint."""

    def __new__(cls, pl: ModuleType, directory: Path) -> Any:
        class Save(pl.Callback):
            def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
                trainer.save_checkpoint(directory / f'manual-{trainer.global_step}.ckpt')

        return Save()


@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_without_a_model_checkpoint_the_default_root_dir_is_guarded(name: str, tmp_path: Path) -> None:
    """``enable_checkpointing=False`` and saves made by hand: the callback guards
    ``default_root_dir`` (no exception for the missing ModelCheckpoint), and records the saves."""
    pl, callback_class = framework(name)
    callback = callback_class(check_every_steps=1)
    root = tmp_path / 'root'
    fit = trainer(pl, root, [callback, SaveEveryStep(pl, root)], max_steps=3, enable_checkpointing=False)
    fit.fit(tiny_model(pl))
    assert fit.global_step == 3
    assert callback.guard is not None and callback.guard.path == str(root)
    assert callback.guard.status().saves == 3
    assert callback.stop_reason is None
    assert sorted(p.name for p in root.glob('*.ckpt')) == [f'manual-{n}.ckpt' for n in (1, 2, 3)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_a_manual_save_that_cannot_fit_is_refused_and_the_stop_is_readable_after_fit(
    name: str, tmp_path: Path
) -> None:
    """No ModelCheckpoint, ``default_root_dir`` on a small tmpfs that another process fills after
    step 2: the manual ``trainer.save_checkpoint`` of step 2 is refused before a byte is written,
    the run stops without an exception, and after ``fit()`` the callback still tells why."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, 6 * CHECKPOINT_MB) as root:
        filler = root / 'other'
        filler.mkdir()
        callback = callback_class(on_full='stop', check_every_steps=10**6, check_every_seconds=10.0**6)
        callbacks = [fill_at_step(pl, 2, filler), callback, SaveEveryStep(pl, root)]
        fit = trainer(pl, root, callbacks, max_steps=20, enable_checkpointing=False)
        with pytest.warns(DiskSpaceWarning, match='manual-2.ckpt.* was not saved'):
            fit.fit(tiny_model(pl))
        assert fit.global_step == 2, 'the refused save stops the run at its step'
        assert [p.name for p in root.glob('*.ckpt')] == ['manual-1.ckpt']
        assert_nothing_partial(root)
        assert callback.guard is not None and callback.stop_reason
        assert callback.stop_reason == callback.guard.status().stop_reason
        assert 'DiskGuard' in str(callback.guard.status())


@pytest.mark.parametrize('name', FRAMEWORKS)
def test_a_custom_checkpoint_without_a_dirpath_falls_back_to_default_root_dir(
    name: str, tmp_path: Path
) -> None:
    pl, callback_class = framework(name)

    class OwnCheckpoint(pl.callbacks.Checkpoint):
        """A user's own checkpoint callback, with no dirpath."""

    callback = callback_class()
    fit = trainer(pl, tmp_path, [callback, OwnCheckpoint()], max_steps=2)
    fit.fit(tiny_model(pl))
    assert fit.global_step == 2
    assert callback.guard is not None and callback.guard.path == str(tmp_path)


@pytest.mark.parametrize('name', FRAMEWORKS)
@pytest.mark.parametrize('mode', ['barebones', 'fast_dev_run'])
def test_barebones_and_fast_dev_run_are_left_alone_with_a_debug_line(
    name: str, mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither has a ModelCheckpoint; neither may fail for it. The callback builds no guard, logs
    one debug line saying why, and stays out of validate() too."""
    pl, callback_class = framework(name)
    callback = callback_class()
    options: dict[str, Any] = {'barebones': True} if mode == 'barebones' else {'fast_dev_run': 2}
    fit = trainer(pl, tmp_path, [callback], max_steps=2, **options)
    with caplog.at_level(logging.DEBUG, logger='diskguard.lightning'):
        fit.fit(tiny_model(pl))
        fit.validate(tiny_model(pl))
    assert fit.global_step == 2
    assert callback.guard is None
    lines = [r.getMessage() for r in caplog.records if r.name == 'diskguard.lightning']
    assert len(lines) == 1 and mode in lines[0], lines


def test_a_remote_directory_is_left_alone(tmp_path: Path) -> None:
    pl, callback_class = framework('lightning')
    callback = callback_class('s3://bucket/checkpoints')
    fit = trainer(pl, tmp_path, [callback], max_steps=2, enable_checkpointing=False)
    with pytest.warns(DiskSpaceWarning, match='local filesystems only'):
        fit.fit(tiny_model(pl))
    assert fit.global_step == 2 and callback.guard is None


def test_fast_dev_run_builds_no_guard(tmp_path: Path) -> None:
    pl, callback_class = framework('lightning')
    seen: list[object] = []

    class Look(pl.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            seen.append(callback.guard)

    callback = callback_class(tmp_path / 'ckpt')
    trainer(pl, tmp_path, [callback, Look()], fast_dev_run=2).fit(tiny_model(pl))
    assert seen == [None, None]


@pytest.mark.timeout(120)
def test_without_the_callback_a_small_tmpdir_fails_the_first_save(tmp_path: Path, small_tmpdir: Path) -> None:
    """The control: Lightning's own publish stages the checkpoint in $TMPDIR."""
    pl, _ = framework('lightning')
    with checkpoint_disk(tmp_path, 8 * CHECKPOINT_MB) as ckpt:
        checkpoint = pl.callbacks.ModelCheckpoint(dirpath=ckpt, save_top_k=-1, every_n_train_steps=1)
        fit = trainer(pl, tmp_path, [checkpoint], max_steps=3)
        with pytest.raises(Exception, match='No space left|unexpected pos|iostream'):
            fit.fit(tiny_model(pl))


@pytest.mark.timeout(240)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_save_top_k_peak_is_planned_for(name: str, tmp_path: Path, small_tmpdir: Path) -> None:
    """top_k=3 plus last.ckpt, each new checkpoint saved before the old k-th is removed: five
    checkpoints at the peak. The guard keeps room for the next save (and a final one) beyond what
    the run holds, so the peak always fits: the run goes on, and never meets ENOSPC."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, 8.5 * CHECKPOINT_MB) as ckpt:
        removed: list[str] = []

        class CountRemovals(pl.Callback):
            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                io = trainer.strategy.checkpoint_io
                original = io.remove_checkpoint
                if not getattr(original, 'counted', False):

                    def remove(path: Any) -> None:
                        removed.append(str(path))
                        original(path)

                    remove.counted = True  # type: ignore[attr-defined]
                    io.remove_checkpoint = remove

        checkpoint = pl.callbacks.ModelCheckpoint(
            dirpath=ckpt, save_top_k=3, monitor='val_loss', mode='min', save_last=True
        )
        fit = trainer(
            pl,
            tmp_path,
            [CountRemovals(), callback_class(), checkpoint],
            max_epochs=12,
            limit_train_batches=2,
        )
        fit.fit(tiny_model(pl))  # an ENOSPC at the peak would raise here

        assert fit.current_epoch == 12, 'room for the peak is kept: the run never has to stop'
        assert len(checkpoint.best_k_models) == 3
        assert len(removed) >= 3, 'the peak (a k+1-th checkpoint before a removal) came again and again'
        assert_references_exist(checkpoint)
        assert_nothing_partial(ckpt, small_tmpdir)
        resumed = trainer(pl, tmp_path, [callback_class(), checkpoint], max_epochs=fit.current_epoch + 1)
        resumed.fit(tiny_model(pl), ckpt_path=checkpoint.best_model_path)
        assert_nothing_partial(ckpt, small_tmpdir)


FILLER = 'import sys; sys.path.insert(0, {tests!r}); from pathlib import Path; from conftest import fill_until_enospc; fill_until_enospc(Path({directory!r}))'


def fill_at_step(pl: ModuleType, step: int, directory: Path) -> Any:
    """A callback that has another process fill ``directory``'s disk after training step ``step``."""

    class FillAtStep(pl.Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step == step:
                code = FILLER.format(tests=str(Path(__file__).parent), directory=str(directory))
                subprocess.run([sys.executable, '-c', code], check=True, timeout=60)

    return FillAtStep()


@pytest.mark.timeout(240)
@pytest.mark.parametrize('cadence', ['checked', 'unchecked'])
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_another_process_fills_the_disk_mid_run(name: str, cadence: str, tmp_path: Path) -> None:
    """Another process fills the disk after the step-4 save. ``checked``: the guard's next check
    sees it and stops the run. ``unchecked`` (no check due before the step-6 save): the save is
    refused before a byte is written, the file it was to replace is kept, ModelCheckpoint is
    pointed back at files that exist, and the run stops without an exception."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, 12 * CHECKPOINT_MB) as ckpt:
        filler = ckpt / 'other'
        filler.mkdir()

        checkpoint = pl.callbacks.ModelCheckpoint(
            dirpath=ckpt, save_top_k=2, monitor='step', mode='max', every_n_train_steps=2, save_last=True
        )
        options = {'check_every_steps': 1} if cadence == 'checked' else {'check_every_steps': 10**6}
        options['check_every_seconds'] = 10.0**6
        callback = callback_class(**options)
        callbacks = [fill_at_step(pl, 5, filler), callback, checkpoint]
        fit = trainer(pl, tmp_path, callbacks, max_steps=60)
        if cadence == 'checked':
            fit.fit(tiny_model(pl))
            assert fit.global_step == 5, 'the check after the fill stops the run before the next save'
        else:
            with pytest.warns(DiskSpaceWarning, match='was not saved'):
                fit.fit(tiny_model(pl))
            assert fit.global_step == 6, 'the refused save stops the run at its step'
            assert sorted(p.name for p in ckpt.glob('epoch=*')) == [
                'epoch=0-step=2.ckpt',
                'epoch=0-step=4.ckpt',
            ]
            assert sorted(checkpoint.best_k_models) == [
                str(ckpt / 'epoch=0-step=2.ckpt'),
                str(ckpt / 'epoch=0-step=4.ckpt'),
            ]
            assert checkpoint.best_model_path == str(ckpt / 'epoch=0-step=4.ckpt')

        assert (filler / 'filler').stat().st_size > 0
        # The stop can be read after fit(): the guard stays, with its status and reason.
        assert callback.guard is not None and callback.stop_reason == callback.guard.status().stop_reason
        assert callback.stop_reason
        assert_references_exist(checkpoint)
        assert checkpoint.best_model_path and checkpoint.last_model_path
        assert_nothing_partial(ckpt)
        os.remove(filler / 'filler')
        last_step = torch.load(checkpoint.last_model_path, weights_only=False)['global_step']
        resumed = trainer(pl, tmp_path, [callback_class(), checkpoint], max_steps=last_step + 3)
        resumed.fit(tiny_model(pl), ckpt_path=checkpoint.last_model_path)
        assert resumed.global_step == last_step + 3


@pytest.mark.timeout(240)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_a_stop_before_min_steps_is_an_error_not_training_on(name: str, tmp_path: Path) -> None:
    """Lightning ignores should_stop until min_steps is met: the run must not train on for
    nothing, so the callback raises instead, naming both settings."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, 12 * CHECKPOINT_MB) as ckpt:
        filler = ckpt / 'other'
        filler.mkdir()

        checkpoint = pl.callbacks.ModelCheckpoint(dirpath=ckpt, every_n_train_steps=2)
        guard = callback_class(check_every_steps=1, check_every_seconds=10.0**6)
        fit = trainer(
            pl, tmp_path, [fill_at_step(pl, 3, filler), guard, checkpoint], max_steps=60, min_steps=40
        )
        with pytest.raises(DiskGuardError, match=r'min_epochs=.* and min_steps=40 are met'):
            fit.fit(tiny_model(pl))
        assert fit.global_step < 10
        assert_nothing_partial(ckpt)


@pytest.mark.timeout(120)
def test_enospc_is_diagnosed_on_the_exception(tmp_path: Path) -> None:
    pl, callback_class = framework('lightning')

    class FullDisk(pl.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            raise OSError(28, 'No space left on device', str(tmp_path))

    fit = trainer(pl, tmp_path, [callback_class(tmp_path / 'ckpt'), FullDisk()], max_steps=3)
    with pytest.raises(OSError) as caught:
        fit.fit(tiny_model(pl))
    notes = getattr(caught.value, '__notes__', [])
    assert notes and notes[0].strip(), 'the diagnosis should be attached to the exception'


def test_checkpoint_state_loads_with_weights_only(tmp_path: Path) -> None:
    pl, callback_class = framework('lightning')
    callback = callback_class(check_every_steps=1)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / 'ckpt', every_n_train_steps=1, save_top_k=-1)
    fit = trainer(pl, tmp_path, [callback, checkpoint], max_steps=2)
    fit.fit(tiny_model(pl))
    saved = torch.load(tmp_path / 'ckpt' / 'epoch=0-step=2.ckpt', weights_only=True)  # the second save
    assert saved['callbacks'][callback.state_key]['guard']['saves'] >= 1
    io = fit.strategy.checkpoint_io  # kept after the fit for saves by hand, detached from the callback
    assert io._callback is None and io.replaced.__class__.__name__ == 'TorchCheckpointIO'


@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_a_torch_writer_failure_on_a_full_disk_is_diagnosed(name: str, tmp_path: Path) -> None:
    """``torch.save`` on a full disk raises ``RuntimeError: ... unexpected pos ...`` with no errno:
    the callback's diagnosis recognises it, having checked that the filesystem is full; the same
    message with room on the disk is not blamed on it."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, 2 * CHECKPOINT_MB) as ckpt:

        class PlainSave(pl.Callback):
            def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
                torch.save({'w': torch.zeros(10**6)}, ckpt / 'plain.pt')  # 4 MB: more than the disk

        callback = callback_class(ckpt, check_every_steps=10**6)
        fit = trainer(pl, tmp_path, [callback, PlainSave()], max_steps=3, enable_checkpointing=False)
        with pytest.raises(RuntimeError, match='unexpected pos|file write failed') as caught:
            fit.fit(tiny_model(pl))
        assert getattr(caught.value, 'errno', None) is None
        (note,) = getattr(caught.value, '__notes__', [])
        assert 'torch failed writing a checkpoint' in note and 'no space left on device' in note, note
        assert f'mounted at {ckpt}' in note, note

        assert callback.guard is not None
        # Room again (the traceback's frames hold torch's file open): the same error no longer
        # means a full disk.
        error = caught.value
        for link in (error, error.__context__):
            if link is not None:
                link.__traceback__ = None
        del caught
        gc.collect()
        os.remove(ckpt / 'plain.pt')
        assert callback.guard.diagnose(error) is None
        assert callback.guard.diagnose(RuntimeError('something else')) is None


@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_contradicting_settings_are_named_once_at_fit_start(name: str, tmp_path: Path) -> None:
    """save_top_k=-1 with a monitor keeps (and references) every checkpoint, so a retention rule
    can delete none; save_top_k=10 needs more room than a 2 MB disk has. Each is named once, when
    the fit starts, with what to change; a fit without either conflict hears nothing."""
    from diskguard import KeepLast, RetentionPolicy

    pl, callback_class = framework(name)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / 'all', save_top_k=-1, monitor='val_loss')
    callback = callback_class(retention=RetentionPolicy(KeepLast(3)))
    fit = trainer(pl, tmp_path, [callback, checkpoint], max_epochs=3, limit_train_batches=2)
    with pytest.warns(DiskSpaceWarning) as warned:
        fit.fit(tiny_model(pl))
    named = [str(w.message) for w in warned if 'save_top_k=-1' in str(w.message)]
    assert len(named) == 1 and 'retention=' in named[0] and 'Set save_top_k' in named[0], named
    assert fit.current_epoch == 3

    with checkpoint_disk(tmp_path, 2 * CHECKPOINT_MB) as ckpt:
        checkpoint = pl.callbacks.ModelCheckpoint(dirpath=ckpt, save_top_k=10, monitor='val_loss')
        fit = trainer(pl, tmp_path, [callback_class(), checkpoint], max_steps=1)
        with pytest.warns(DiskSpaceWarning) as warned:
            fit.fit(tiny_model(pl))
        named = [str(w.message) for w in warned if 'save_top_k=10' in str(w.message)]
        assert len(named) == 1 and 'lower save_top_k to' in named[0], named

    with warnings.catch_warnings():
        warnings.simplefilter('error', DiskSpaceWarning)
        checkpoint = pl.callbacks.ModelCheckpoint(
            dirpath=tmp_path / 'three', save_top_k=3, monitor='val_loss'
        )
        trainer(pl, tmp_path, [callback_class(), checkpoint], max_steps=2).fit(tiny_model(pl))


def du(directory: Path) -> int:
    """Bytes allocated under ``directory``, itself included (as the guard counts what it holds)."""
    total = directory.lstat().st_blocks * 512
    for path in directory.rglob('*'):
        total += path.lstat().st_blocks * 512
    return total


@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_what_the_run_holds_follows_lightnings_top_k_removals(name: str, tmp_path: Path) -> None:
    """ModelCheckpoint(save_top_k=2) saves at every step and removes the one that drops out:
    right after, the guard's figure of what the run holds is what the directory holds."""
    pl, callback_class = framework(name)
    ckpt = tmp_path / 'ckpt'
    seen: list[tuple[int, int]] = []

    class Compare(pl.Callback):
        def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step:  # after the previous step's save and removal
                seen.append((callback.guard.status().held, du(ckpt)))

    callback = callback_class(check_every_steps=1)
    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=ckpt, save_top_k=2, monitor='step', mode='max', every_n_train_steps=1
    )
    trainer(pl, tmp_path, [Compare(), callback, checkpoint], max_steps=8).fit(tiny_model(pl))
    assert len(list(ckpt.glob('*.ckpt'))) == 2
    assert len(seen) == 7
    # Within a few blocks (the directory's own, made by the first save), where a checkpoint is 0.8 MB.
    assert all(abs(held - on_disk) <= 16 * 1024 for held, on_disk in seen), seen


@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_warnings_point_at_the_users_code(name: str, tmp_path: Path) -> None:
    """The guard's warnings name the line that called ``fit()`` (here, this file), not a Lightning
    dispatch line."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, 6 * CHECKPOINT_MB) as root:
        filler = root / 'other'
        filler.mkdir()
        callback = callback_class(on_full='stop', check_every_steps=10**6, check_every_seconds=10.0**6)
        callbacks = [fill_at_step(pl, 2, filler), callback, SaveEveryStep(pl, root)]
        fit = trainer(pl, root, callbacks, max_steps=20, enable_checkpointing=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            fit.fit(tiny_model(pl))
    ours = [w for w in caught if issubclass(w.category, DiskSpaceWarning)]
    assert ours and [w.filename for w in ours] == [__file__] * len(ours), [
        (w.filename, w.lineno) for w in ours
    ]


# ----- the disk next to the loss -----


def recording_logger(pl: ModuleType) -> Any:
    """A logger of ``pl`` that records every ``log_metrics`` call, as a custom logger sees them."""

    class Recording(pl.loggers.Logger):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[int, dict[str, float]]] = []

        @property
        def name(self) -> str:
            return 'recording'

        @property
        def version(self) -> int:
            return 0

        def log_metrics(self, metrics: dict[str, float], step: int) -> None:
            self.calls.append((step, dict(metrics)))

        def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
            pass

    return Recording()


@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_disk_figures_go_in_the_same_logger_calls_as_the_loss(name: str, tmp_path: Path) -> None:
    """Every ``log_metrics`` call a logger gets has steps that never go backwards, and the disk
    figures come in exactly the calls that carry the training loss (Lightning's step and
    ``log_every_n_steps`` cadence): none before the first training step, none on a step of their
    own, none beside the validation metrics."""
    pl, callback_class = framework(name)
    recording = recording_logger(pl)
    callback = callback_class(tmp_path / 'ckpt', check_every_steps=1)
    fit = trainer(pl, tmp_path, [callback], max_steps=20, logger=recording, log_every_n_steps=3)
    fit.fit(tiny_model(pl))
    steps = [step for step, _ in recording.calls]
    assert steps == sorted(steps), f'steps go backwards: {steps}'
    with_loss = [(step, m) for step, m in recording.calls if 'train_loss' in m]
    with_disk = [(step, m) for step, m in recording.calls if 'disk/free_bytes' in m]
    assert with_loss and with_disk == with_loss, recording.calls
    assert [step for step, _ in with_loss] == [2, 5, 8, 11, 14, 17], 'log_every_n_steps=3'
    assert all(m['disk/free_bytes'] > 0 and 0 < m['disk/used_percent'] < 100 for _, m in with_disk)


@pytest.mark.timeout(120)
@pytest.mark.parametrize('megabytes', [16, 2_000_000], ids=['small-disk', 'far-from-thresholds'])
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_each_logger_call_carries_the_figures_of_that_batchs_check(
    name: str, megabytes: int, tmp_path: Path
) -> None:
    """The figures a logger gets are those of the check made at that very batch, at every logged
    step and in every epoch (the first log of a figure registers it with Lightning, the later ones
    only hand it the new value): on a tmpfs that fills by 128 KiB a step, each call has less free
    room than the one before, and exactly what the guard measured. Also on a disk far from every
    threshold, where a step's check grades figures measured up to 50 ms before: a logged batch
    measures."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, megabytes) as disk:
        guarded = disk / 'ckpt'
        callback = callback_class(guarded, check_every_steps=1)
        seen: list[tuple[int, float, float]] = []

        class Checking(recording_logger(pl).__class__):  # type: ignore[misc]
            def log_metrics(self, metrics: dict[str, float], step: int) -> None:
                super().log_metrics(metrics, step)
                if 'disk/free_bytes' in metrics:
                    measured = callback.guard.metrics()['disk/free_bytes']
                    as_logged = torch.tensor(measured, dtype=torch.get_default_dtype()).item()
                    seen.append((step, metrics['disk/free_bytes'], as_logged))

        class Fill(pl.Callback):
            def on_train_batch_start(self, *args: Any) -> None:
                with open(disk / 'filler', 'ab') as f:
                    f.write(b'x' * 128 * 1024)

        fit = trainer(pl, tmp_path, [Fill(), callback], max_steps=20, logger=Checking(), log_every_n_steps=3)
        fit.fit(tiny_model(pl))
    assert [step for step, _, _ in seen] == [2, 5, 8, 11, 14, 17], seen  # three epochs of 8 batches
    assert all(logged == measured for _, logged, measured in seen), seen
    free = [logged for _, logged, _ in seen]
    assert free == sorted(free, reverse=True) and len(set(free)) == len(free), free


@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_the_figures_leave_lightnings_batch_results_after_their_logger_call(
    name: str, tmp_path: Path
) -> None:
    """Lightning copies every live result metric into its metrics at each batch end. The figures
    are live only on the batches whose metrics go to the loggers; at the others Lightning does no
    work for them (it was several microseconds a figure, at every batch of the fit)."""
    pl, callback_class = framework(name)
    callback = callback_class(tmp_path / 'ckpt', check_every_steps=1)
    live: list[int] = []
    logged: list[int] = []

    class Checking(recording_logger(pl).__class__):  # type: ignore[misc]
        def log_metrics(self, metrics: dict[str, float], step: int) -> None:
            super().log_metrics(metrics, step)
            if 'disk/free_bytes' in metrics:
                logged.append(step)

    class Spy(pl.Callback):  # after the guard's callback: sees what Lightning collects next
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if 'disk/free_bytes' in trainer._results.metrics(True)['log']:
                live.append(trainer.global_step - 1)

    fit = trainer(pl, tmp_path, [callback, Spy()], max_steps=20, logger=Checking(), log_every_n_steps=3)
    fit.fit(tiny_model(pl))
    assert logged == [2, 5, 8, 11, 14, 17], logged
    assert live == logged, live
    assert fit.callback_metrics['disk/free_bytes'] > 0, 'the last figures stay readable'


@pytest.mark.timeout(120)
@pytest.mark.parametrize('log_metrics', [True, False])
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_disk_columns_are_on_the_loss_rows_in_csv_and_tensorboard(
    name: str, log_metrics: bool, tmp_path: Path
) -> None:
    pl, callback_class = framework(name)
    csv_logger = pl.loggers.CSVLogger(tmp_path / 'logs')
    tensorboard = pl.loggers.TensorBoardLogger(tmp_path / 'tb')
    callback = callback_class(tmp_path / 'ckpt', check_every_steps=1, log_metrics=log_metrics)
    fit = trainer(
        pl, tmp_path, [callback], max_steps=10, logger=[csv_logger, tensorboard], log_every_n_steps=2
    )
    fit.fit(tiny_model(pl))

    with open(Path(csv_logger.log_dir) / 'metrics.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    loss_rows = [row['step'] for row in rows if row.get('train_loss')]
    disk_rows = [row['step'] for row in rows if row.get('disk/free_bytes')]
    assert loss_rows == ['1', '3', '5', '7', '9']

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard.log_dir))
    events.Reload()
    tags = events.Tags()['scalars']
    loss_steps = [event.step for event in events.Scalars('train_loss')]
    if log_metrics:
        assert disk_rows == loss_rows, rows
        assert [event.step for event in events.Scalars('disk/free_bytes')] == loss_steps
        assert [event.step for event in events.Scalars('disk/used_percent')] == loss_steps
    else:
        assert disk_rows == [] and not [tag for tag in tags if tag.startswith('disk/')]


# ----- DDP: two CPU processes (gloo) -----

# torch aborts a process that exits with a gloo group alive, now and then ("terminate called without
# an active exception", pytorch/pytorch#190489), and Lightning destroys its group only for NCCL. Every
# process destroys it at exit, as torch's docs ask: ddp_spawn's workers import the script too.
DESTROY_GROUP_AT_EXIT = """@atexit.register
def destroy_process_group():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
"""

DDP_SCRIPT = """
import atexit, json, os, sys
sys.path.insert(0, {tests!r})
import lightning.pytorch as pl
import torch.distributed as dist
from diskguard.lightning import DiskGuardCallback
from lightning_model import tiny_model

{destroy_group_at_exit}
class Record(pl.Callback):
    def __init__(self, out):
        self.out = out

    def on_train_end(self, trainer, pl_module):
        guard = next(c for c in trainer.callbacks if isinstance(c, DiskGuardCallback)).guard
        with open(os.path.join(self.out, f'rank{{trainer.global_rank}}.json'), 'w') as f:
            json.dump({{'step': trainer.global_step, 'deletes': guard.deletes,
                        'stop': trainer.should_stop}}, f)

if __name__ == '__main__':
    strategy, ckpt, out = sys.argv[1:4]
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=ckpt, save_top_k=3, monitor='step', mode='max',
                                              every_n_train_steps=1)
    trainer = pl.Trainer(accelerator='cpu', devices=2, strategy=strategy, max_steps=200, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, default_root_dir=out,
                         callbacks=[DiskGuardCallback(check_every_steps=2), checkpoint, Record(out)])
    trainer.fit(tiny_model(pl))
    print('FIT RETURNED', flush=True)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize('strategy', ['ddp', 'ddp_spawn'])
def test_ddp_ranks_stop_together(strategy: str, tmp_path: Path) -> None:
    framework('lightning')
    script = tmp_path / 'train.py'
    script.write_text(
        DDP_SCRIPT.format(tests=str(Path(__file__).parent), destroy_group_at_exit=DESTROY_GROUP_AT_EXIT)
    )
    out = tmp_path / 'out'
    out.mkdir()
    with checkpoint_disk(tmp_path, 6 * CHECKPOINT_MB) as ckpt:
        # An outside writer has left room for only a few checkpoints.
        (ckpt / 'other').write_bytes(b'\0' * int(3 * CHECKPOINT_MB * 1e6))
        env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
        env.pop('TMPDIR', None)
        result = subprocess.run(
            [sys.executable, str(script), strategy, str(ckpt), str(out)],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert 'FIT RETURNED' in result.stdout
        ranks = [json.loads(p.read_text()) for p in out.glob('rank*.json')]
        assert len(ranks) == 2, result.stderr[-3000:]
        assert ranks[0]['step'] == ranks[1]['step'] < 200, ranks
        assert all(r['stop'] for r in ranks)
        assert sorted(r['deletes'] for r in ranks) == [False, True], 'exactly one rank deletes'
        assert_nothing_partial(ckpt)
        assert not [p for p in ckpt.iterdir() if p.name.startswith('.diskguard-')]


EVERY_RANK_SCRIPT = """
import atexit, json, os, shutil, sys, warnings
from pathlib import Path
sys.path.insert(0, {tests!r})
import lightning.pytorch as pl
import torch
import torch.distributed as dist
from diskguard import DiskSpaceWarning
from diskguard.lightning import DiskGuardCallback
from lightning_model import tiny_model

{destroy_group_at_exit}
class EveryRankDDP(pl.strategies.DDPStrategy):
    # Saves as FSDPStrategy(state_dict_type='sharded') does (lightning/pytorch/strategies/fsdp.py,
    # save_checkpoint): rank zero's path, a directory, every rank writes its own part, rank zero the
    # metadata; removal (remove_checkpoint there) deletes the directory from rank zero.
    def save_checkpoint(self, checkpoint, filepath, storage_options=None):
        path = Path(self.broadcast(filepath))
        path.mkdir(parents=True, exist_ok=True)
        parts = {{'state_dict': checkpoint.pop('state_dict'), 'optimizer_states': checkpoint.pop('optimizer_states')}}
        torch.save(parts, path / f'rank{{self.global_rank}}.pt')
        if self.global_rank == 0:
            torch.save(checkpoint, path / 'meta.pt')

    def remove_checkpoint(self, filepath):
        if self.is_global_zero:
            shutil.rmtree(filepath)

class Fill(pl.Callback):
    # At step 3 another writer leaves room for 1.5 parts: one rank's part would fit, both do not.
    def __init__(self, ckpt, out):
        self.ckpt, self.out = ckpt, out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 3 and trainer.is_global_zero:
            part = os.path.getsize(os.path.join(self.ckpt, 'epoch=0-step=2.ckpt', 'rank0.pt'))
            st = os.statvfs(self.ckpt)
            free = st.f_bavail * st.f_frsize
            with open(os.path.join(self.ckpt, '..', 'filler'), 'wb') as f:
                f.write(b'x' * (free - int(1.5 * part)))
            st = os.statvfs(self.ckpt)
            with open(os.path.join(self.out, 'fill.json'), 'w') as f:
                json.dump({{'part': part, 'free': st.f_bavail * st.f_frsize}}, f)
        trainer.strategy.barrier()

class Record(pl.Callback):
    def __init__(self, out):
        self.out = out

    def on_train_end(self, trainer, pl_module):
        with open(os.path.join(self.out, f'rank{{trainer.global_rank}}.json'), 'w') as f:
            json.dump({{'step': trainer.global_step, 'stop': trainer.should_stop}}, f)

if __name__ == '__main__':
    ckpt, out = sys.argv[1:3]
    warnings.simplefilter('always', DiskSpaceWarning)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=ckpt, save_top_k=-1, every_n_train_steps=1)
    guard = DiskGuardCallback(check_every_steps=1, on_full='stop', reserve=0)
    trainer = pl.Trainer(accelerator='cpu', devices=2, strategy=EveryRankDDP(), max_steps=8, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, default_root_dir=out,
                         callbacks=[Fill(ckpt, out), guard, checkpoint, Record(out)])
    trainer.fit(tiny_model(pl))
    print(f'FIT RETURNED on rank {{trainer.global_rank}}: {{guard.stop_reason}}', flush=True)
"""


@pytest.mark.timeout(300)
def test_a_save_every_rank_writes_is_refused_on_every_rank_before_any_writes(tmp_path: Path) -> None:
    """A strategy whose every rank writes its part of each checkpoint (as FSDP's sharded save):
    the ranks' bytes are summed before any rank writes. Once the disk holds one rank's part but
    not both, that save is refused on both ranks at the same step: no rank writes a byte of it,
    both stop there, and every checkpoint left is whole and loads."""
    framework('lightning')
    script = tmp_path / 'train.py'
    script.write_text(
        EVERY_RANK_SCRIPT.format(
            tests=str(Path(__file__).parent), destroy_group_at_exit=DESTROY_GROUP_AT_EXIT
        )
    )
    out = tmp_path / 'out'
    out.mkdir()
    with mounted_tmpfs(tmp_path / 'disk', size='16m', nr_inodes=None) as disk:
        ckpt = disk / 'ckpt'
        env = {**os.environ, 'PYTHONWARNINGS': 'ignore::UserWarning,ignore::DeprecationWarning'}
        env.pop('TMPDIR', None)
        result = subprocess.run(
            [sys.executable, str(script), str(ckpt), str(out)],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            check=False,
        )
        logs = result.stdout[-3000:] + result.stderr[-3000:]
        assert result.returncode == 0, logs
        assert result.stdout.count('FIT RETURNED') == 2, logs
        ranks = [json.loads((out / f'rank{rank}.json').read_text()) for rank in (0, 1)]
        fill = json.loads((out / 'fill.json').read_text())
        assert 1.4 * fill['part'] < fill['free'] < 2 * fill['part'], fill  # one part fits, two do not
        # The batch that starts at step 3 ends at step 4, whose save is refused.
        assert ranks[0] == ranks[1] == {'step': 4, 'stop': True}, (ranks, logs)
        assert result.stderr.count('no rank writes') == 1, logs  # one warning, from rank zero
        assert 'checkpoint directory' in result.stderr and 'epoch=0-step=4.ckpt' in result.stderr, logs
        saved = sorted(p.name for p in ckpt.iterdir())
        assert saved == [f'epoch=0-step={step}.ckpt' for step in (1, 2, 3)], saved  # nothing of step 4
        for directory in saved:
            assert sorted(p.name for p in (ckpt / directory).iterdir()) == ['meta.pt', 'rank0.pt', 'rank1.pt']
            for part in (ckpt / directory).iterdir():
                torch.load(part, weights_only=False)


# ----- Lightning's AsyncCheckpointIO -----


def async_io(pl: ModuleType, gates: dict[str, tuple[Any, Any]] | None = None) -> Any:
    """The framework's own ``AsyncCheckpointIO``; with ``gates`` ({part of a file name: (before,
    after)}), a subclass that runs ``before`` on its writing thread right before that save's write
    and ``after`` right after it (its executor has one thread: the jobs run in order)."""
    base = importlib.import_module(f'{pl.__name__}.plugins.io.async_plugin').AsyncCheckpointIO
    if not gates:
        return base()

    class Gated(base):  # type: ignore[misc,valid-type]
        def save_checkpoint(self, checkpoint: Any, path: Any, *args: Any, **kwargs: Any) -> None:
            self._ensure_setup()
            gate = next((g for part, g in gates.items() if part in os.fspath(path)), None)
            if gate is not None and gate[0] is not None:
                self._executor.submit(gate[0])
            super().save_checkpoint(checkpoint, path, *args, **kwargs)
            if gate is not None and gate[1] is not None:
                self._executor.submit(gate[1])

    return Gated()


def on_batch(pl: ModuleType, hook: str, step: int | None, action: Any) -> Any:
    """A callback that runs ``action()`` in ``hook`` when ``trainer.global_step == step`` (None: always)."""

    class OnBatch(pl.Callback):
        pass

    def run(self: Any, trainer: Any, *args: Any) -> None:
        if step is None or trainer.global_step == step:
            action()

    setattr(OnBatch, hook, run)
    return OnBatch()


@pytest.mark.timeout(240)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_async_checkpoint_io_saves_are_published_whole_and_accounted(name: str, tmp_path: Path) -> None:
    """With ``plugins=[AsyncCheckpointIO()]`` the callback leaves Lightning's plugin in place, checks
    each save for room on the training thread, writes it with diskguard.save on the plugin's thread,
    and removes a top-k checkpoint only once the save replacing it is whole."""
    pl, callback_class = framework(name)
    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / 'ckpt', save_top_k=2, monitor='step', mode='max', every_n_train_steps=2
    )
    callback = callback_class(check_every_steps=1)
    plugin = async_io(pl)
    fit = trainer(pl, tmp_path, [callback, checkpoint], max_steps=10, plugins=[plugin])
    with warnings.catch_warnings():
        warnings.simplefilter('error', DiskSpaceWarning)  # the plugin is not left unguarded
        fit.fit(tiny_model(pl))
    assert fit.global_step == 10
    assert fit.strategy.checkpoint_io is plugin, 'the plugin is put back after the fit'
    assert type(plugin.checkpoint_io).__name__ == 'TorchCheckpointIO'
    assert sorted(p.name for p in (tmp_path / 'ckpt').iterdir()) == [
        'epoch=0-step=8.ckpt',
        'epoch=1-step=10.ckpt',
    ], 'top-k removals still happen, once the save replacing the file is whole'
    assert_nothing_partial(tmp_path / 'ckpt')
    assert callback.guard is not None and callback.guard.state_dict()['saves'] == 5
    assert plugin._error is None


@pytest.mark.timeout(240)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_an_async_save_that_hits_enospc_surfaces_at_the_next_step_and_the_run_stops_cleanly(
    name: str, tmp_path: Path
) -> None:
    """Another process fills the disk after the step-4 save was checked and handed to the plugin's
    thread, before its write: the write hits ENOSPC there. At the next step the training thread gets
    it with the guard's diagnosis (a DiskSpaceWarning, no crash), the run stops, nothing partial is
    left, the step-2 checkpoint Lightning had asked to remove is kept, ModelCheckpoint points at it,
    and the run resumes from it."""
    import threading

    pl, callback_class = framework(name)
    written = threading.Event()
    with checkpoint_disk(tmp_path, 12 * CHECKPOINT_MB) as ckpt:
        filler = ckpt / 'other'
        filler.mkdir()
        code = FILLER.format(tests=str(Path(__file__).parent), directory=str(filler))

        def fill() -> None:
            subprocess.run([sys.executable, '-c', code], check=True, timeout=60)

        plugin = async_io(pl, {'step=4': (fill, written.set)})
        checkpoint = pl.callbacks.ModelCheckpoint(
            dirpath=ckpt, save_top_k=1, monitor='step', mode='max', every_n_train_steps=2
        )
        callback = callback_class(check_every_steps=10**6, check_every_seconds=10.0**6)
        # Step 5 begins once the failed write ended: the failure surfaces at that step's end.
        wait = on_batch(pl, 'on_train_batch_start', 4, lambda: written.wait(60))
        fit = trainer(pl, tmp_path, [wait, callback, checkpoint], max_steps=60, plugins=[plugin])
        with pytest.warns(DiskSpaceWarning, match='background write failed') as caught:
            fit.fit(tiny_model(pl))
        assert written.is_set()
        assert fit.global_step == 5, 'the failure surfaces at the step after the save'
        message = next(str(w.message) for w in caught if 'background write failed' in str(w.message))
        assert 'step=4' in message and 'No space left on device' in message
        # The guard's diagnosis: which filesystem, what the run holds there, what to change.
        assert f'filesystem: tmpfs mounted at {ckpt}' in message and 'the run holds' in message
        assert sorted(p.name for p in ckpt.glob('*.ckpt')) == ['epoch=0-step=2.ckpt']
        assert_nothing_partial(ckpt)
        assert_references_exist(checkpoint)
        assert checkpoint.best_model_path == str(ckpt / 'epoch=0-step=2.ckpt')
        assert plugin._error is None and fit.strategy.checkpoint_io is plugin
        os.remove(filler / 'filler')
        resumed = trainer(pl, tmp_path, [callback_class(), checkpoint], max_steps=5, plugins=[async_io(pl)])
        resumed.fit(tiny_model(pl), ckpt_path=checkpoint.best_model_path)
        assert resumed.global_step == 5


def main_thread_blocked() -> bool:
    """Whether the main (training) thread is waiting on a threading condition (a future's result)."""
    import threading

    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        if frame.f_code.co_name == 'wait' and frame.f_code.co_filename.endswith('threading.py'):
            return True
        frame = frame.f_back
    return False


@pytest.mark.timeout(240)
@pytest.mark.parametrize('if_busy', ['wait', 'refuse'])
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_a_save_beside_one_in_flight_waits_or_is_refused(name: str, if_busy: str, tmp_path: Path) -> None:
    """The step-2 save is held on the plugin's thread before its write. ``refuse``: after step 3 the
    disk has room for 2 checkpoints but not their margins; the step-4 save counts the step-2 one's bytes (not on disk
    yet) as held, does not fit beside them and is refused before a byte is written (the run stops;
    step 2 is written once released). ``wait``: the step-4 save blocks the training thread until
    the step-2 one is whole."""
    import threading

    pl, callback_class = framework(name)
    release, blocked = threading.Event(), []

    def watch() -> None:  # releases the step-2 write once the training thread waits for it
        for _ in range(3000):
            if main_thread_blocked():
                blocked.append(True)
                break
            release.wait(0.01)
        release.set()

    with checkpoint_disk(tmp_path, 12 * CHECKPOINT_MB) as ckpt:

        def leave_room() -> None:  # another file takes all but 2 checkpoints' room
            stat = os.statvfs(ckpt)
            with open(ckpt / 'other', 'wb') as other:
                os.posix_fallocate(other.fileno(), 0, stat.f_bavail * stat.f_frsize - int(2.0 * 0.92e6))

        plugin = async_io(pl, {'step=2': (lambda: release.wait(60), None)})
        callback = callback_class(check_every_steps=10**6, check_every_seconds=10.0**6, if_busy=if_busy)
        checkpoint = pl.callbacks.ModelCheckpoint(dirpath=ckpt, save_top_k=-1, every_n_train_steps=2)
        if if_busy == 'refuse':
            hooks = [
                on_batch(pl, 'on_train_batch_end', 3, leave_room),
                on_batch(pl, 'on_train_end', None, release.set),
            ]
        else:
            hooks = [on_batch(pl, 'on_train_batch_end', 4, lambda: threading.Thread(target=watch).start())]
        fit = trainer(pl, tmp_path, [*hooks, callback, checkpoint], max_steps=6, plugins=[plugin])
        if if_busy == 'refuse':
            with pytest.warns(DiskSpaceWarning, match=r"step=4.ckpt' was not saved") as caught:
                fit.fit(tiny_model(pl))
            assert any('1.5 MiB checkpoint' in str(w.message) for w in caught), 'the bytes in flight are held'
            assert fit.global_step == 4
            assert sorted(p.name for p in ckpt.glob('*.ckpt')) == ['epoch=0-step=2.ckpt']
        else:
            with warnings.catch_warnings():
                warnings.simplefilter('error', DiskSpaceWarning)
                fit.fit(tiny_model(pl))
            assert blocked, 'the step-4 save waited for the step-2 one'
            assert fit.global_step == 6
            assert sorted(p.name for p in ckpt.glob('*.ckpt')) == [
                'epoch=0-step=2.ckpt',
                'epoch=0-step=4.ckpt',
                'epoch=0-step=6.ckpt',
            ]
        assert_nothing_partial(ckpt)
        assert_references_exist(checkpoint)


@pytest.mark.timeout(240)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_an_async_save_that_fails_as_the_fit_ends_is_reported_and_the_previous_one_kept(
    name: str, tmp_path: Path
) -> None:
    """The last save of the fit (step 6) hits ENOSPC in the background after the last step: the end
    of the fit waits for it, reports it with the guard's diagnosis, keeps the step-4 checkpoint
    Lightning had asked to remove, and points ModelCheckpoint back at it."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, 12 * CHECKPOINT_MB) as ckpt:
        filler = ckpt / 'other'
        filler.mkdir()
        code = FILLER.format(tests=str(Path(__file__).parent), directory=str(filler))

        def fill() -> None:
            subprocess.run([sys.executable, '-c', code], check=True, timeout=60)

        plugin = async_io(pl, {'step=6': (fill, None)})
        checkpoint = pl.callbacks.ModelCheckpoint(
            dirpath=ckpt, save_top_k=1, monitor='step', mode='max', every_n_train_steps=2
        )
        callback = callback_class(check_every_steps=10**6, check_every_seconds=10.0**6)
        fit = trainer(pl, tmp_path, [callback, checkpoint], max_steps=6, plugins=[plugin])
        with pytest.warns(DiskSpaceWarning, match=r"step=6.ckpt' was not saved: its background write failed"):
            fit.fit(tiny_model(pl))
        assert sorted(p.name for p in ckpt.glob('*.ckpt')) == ['epoch=0-step=4.ckpt']
        assert_nothing_partial(ckpt)
        assert_references_exist(checkpoint)
        assert checkpoint.best_model_path == str(ckpt / 'epoch=0-step=4.ckpt')
        assert torch.load(checkpoint.best_model_path, weights_only=False)['global_step'] == 4
        assert plugin._error is None and fit.strategy.checkpoint_io is plugin


@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_a_save_by_hand_after_fit_is_whole_or_refused(name: str, tmp_path: Path) -> None:
    """``trainer.fit(model); trainer.save_checkpoint('final.ckpt')``, the most common save by hand,
    came after the callback had put Lightning's own IO back: on a full disk it left a truncated
    ``final.ckpt``. After the fit the saves still go through :func:`diskguard.save` (whole or
    refused before a byte is written), with no guard left to record them."""
    pl, callback_class = framework(name)
    with checkpoint_disk(tmp_path, 6 * CHECKPOINT_MB) as root:
        fit = trainer(pl, root, [callback_class()], max_steps=2, enable_checkpointing=False)
        fit.fit(tiny_model(pl))
        fit.save_checkpoint(root / 'final.ckpt')
        assert torch.load(root / 'final.ckpt', weights_only=False)['global_step'] == 2
        left = shutil.disk_usage(root).free - int(CHECKPOINT_MB * 1e6) // 2  # room for half a checkpoint
        (root / 'filler').write_bytes(b'\0' * left)
        with pytest.raises(InsufficientSpaceError):
            fit.save_checkpoint(root / 'again.ckpt')
        assert sorted(p.name for p in root.iterdir()) == ['filler', 'final.ckpt']
        assert_nothing_partial(root)
        pickle.loads(pickle.dumps(fit.strategy.checkpoint_io))  # as Lightning's own IO pickles


# ----- a fresh run in a finished run's directory (issue 16) -----


@pytest.mark.timeout(240)
@pytest.mark.parametrize('name', FRAMEWORKS)
def test_a_fresh_fit_in_a_finished_runs_directory_keeps_the_new_checkpoints(
    name: str, tmp_path: Path
) -> None:
    """The finished run's checkpoints have higher steps; the new run's survive, the old ones go first."""
    from diskguard import KeepLast, RetentionPolicy

    pl, callback_class = framework(name)
    ckpt = tmp_path / 'ckpt'
    first = pl.callbacks.ModelCheckpoint(dirpath=ckpt, save_top_k=-1, every_n_train_steps=5)
    trainer(pl, tmp_path, [first], max_steps=40).fit(tiny_model(pl))
    old = {p.name for p in ckpt.iterdir()}
    assert len(old) == 8

    again = pl.callbacks.ModelCheckpoint(dirpath=ckpt, save_top_k=-1, every_n_train_steps=5)
    guard = callback_class(check_every_steps=1, retention=RetentionPolicy(KeepLast(3)))
    trainer(pl, tmp_path, [guard, again], max_steps=20).fit(tiny_model(pl))
    left = {p.name for p in ckpt.iterdir()}
    steps = {torch.load(ckpt / n, weights_only=False)['global_step'] for n in left}
    # Lightning writes the new run's steps 5..20 over the old names; the old run's 25..40 go first.
    assert steps == {10, 15, 20}, f'the new run keeps its own last three: {sorted(left)}'
    assert_nothing_partial(ckpt)
