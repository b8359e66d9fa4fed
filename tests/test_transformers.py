"""The Hugging Face ``Trainer`` integration with the real Trainer on CPU, on real, small filesystems.

A tiny model defined here (no downloads) writes ``checkpoint-N`` folders of about 3 MB into a tmpfs
that holds a few of them. Without diskguard the Trainer crashes mid-folder when the disk fills and
``transformers.trainer_utils.get_last_checkpoint`` then picks the partial folder; with the callback
the run never crashes, never leaves a partial folder, and resumes from what is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskguard
import pytest
from conftest import mounted_tmpfs

pytestmark = [pytest.mark.torch, pytest.mark.timeout(240)]
torch = pytest.importorskip('torch', reason='the Trainer tests need torch: pip install -e .[test]')
transformers = pytest.importorskip('transformers', reason='pip install -e .[test]')

from diskguard.transformers import DiskGuardCallback, get_last_checkpoint
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint as hf_get_last_checkpoint

MiB = 1024 * 1024
FEATURES = 64
HIDDEN = 4096  # 64*4096 + 4096*1 weights: 1.1 MB of float32; with Adam's two moments ~3.2 MB a checkpoint


class TinyRegressor(torch.nn.Module):
    """A two-layer MLP that returns ``{'loss': ...}`` as the Trainer expects."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(FEATURES, HIDDEN)
        self.out = torch.nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.out(torch.relu(self.hidden(x))).squeeze(-1)
        return {'loss': torch.nn.functional.mse_loss(prediction, y)}


def dataset(n: int = 64) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, FEATURES, generator=generator)
    y = x.sum(dim=1)
    return [{'x': x[i], 'y': y[i]} for i in range(n)]


def arguments(output_dir: Path, **overrides: Any) -> TrainingArguments:
    settings: dict[str, Any] = {
        'output_dir': str(output_dir),
        'per_device_train_batch_size': 8,
        'max_steps': 24,
        'save_strategy': 'steps',
        'save_steps': 2,
        'logging_steps': 2,
        'report_to': 'none',
        'use_cpu': True,
        'disable_tqdm': True,
        'seed': 0,
    }
    settings.update(overrides)
    return TrainingArguments(**settings)


def trainer(output_dir: Path, callbacks: list[TrainerCallback], **overrides: Any) -> Trainer:
    torch.manual_seed(0)
    return Trainer(
        model=TinyRegressor(),
        args=arguments(output_dir, **overrides),
        train_dataset=dataset(),
        callbacks=callbacks,
    )


def checkpoints(output_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders, by step."""
    found = [p for p in output_dir.iterdir() if p.name.startswith('checkpoint-')]
    return sorted(found, key=lambda p: int(p.name.split('-')[1]))


def assert_all_complete(output_dir: Path) -> None:
    """Every checkpoint folder has its trainer_state.json, and every file in it loads."""
    for folder in checkpoints(output_dir):
        assert (folder / 'trainer_state.json').is_file(), f'partial checkpoint {folder.name}'
        json.loads((folder / 'trainer_state.json').read_text())
        torch.load(folder / 'optimizer.pt', weights_only=True)
    assert not [p for p in output_dir.iterdir() if p.name.startswith(('.diskguard-', 'tmp-'))]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: about four checkpoints."""
    with mounted_tmpfs(tmp_path / 'disk', size='16m', nr_inodes=None) as where:
        yield where


def test_control_without_diskguard_the_trainer_crashes_and_leaves_a_partial_folder(small_disk: Path) -> None:
    """The failure the callback exists for, measured on this disk: a crash mid-checkpoint, and
    transformers' get_last_checkpoint picks the partial folder."""
    out = small_disk / 'out'
    with pytest.raises(Exception, match='No space left on device|unexpected pos') as crash:
        trainer(out, []).train()
    assert 'No space left on device' in str(crash.value) or 'No space' in repr(crash.value.__context__)
    last = hf_get_last_checkpoint(str(out))
    assert last is not None
    assert not (Path(last) / 'trainer_state.json').exists(), 'the newest folder is partial'
    ours = get_last_checkpoint(str(out))
    assert ours is not None and ours != last
    assert (Path(ours) / 'trainer_state.json').is_file()


def train_on_a_full_disk(run: Trainer, **train_kwargs: Any) -> list[str]:
    """``run.train()`` where the guard is expected to warn (and act); returns what it warned."""
    with pytest.warns(diskguard.DiskSpaceWarning) as warned:
        run.train(**train_kwargs)
    return [str(w.message) for w in warned if issubclass(w.category, diskguard.DiskSpaceWarning)]


def guard_callback(**kwargs: Any) -> DiskGuardCallback:
    """The callback as the tests attach it: a check at every step, so each test's disk events are
    seen at the step they happen."""
    return DiskGuardCallback(**{'check_every_steps': 1, **kwargs})


def resume(output_dir: Path, max_steps: int, **overrides: Any) -> Trainer:
    """A new Trainer continuing from our get_last_checkpoint, the way a restarted job does."""
    last = get_last_checkpoint(str(output_dir))
    assert last is not None and last == diskguard.latest_complete(output_dir)
    resumed = trainer(output_dir, [guard_callback()], max_steps=max_steps, **overrides)
    train_on_a_full_disk(resumed, resume_from_checkpoint=last)
    assert resumed.state.global_step == max_steps
    return resumed


def test_without_save_total_limit_the_guard_makes_room_and_the_run_finishes(small_disk: Path) -> None:
    out = small_disk / 'out'
    run = trainer(out, [guard_callback()])
    warned = train_on_a_full_disk(run)
    assert run.state.global_step == 24
    assert [w for w in warned if 'delet' in w], warned
    assert_all_complete(out)
    kept = [p.name for p in checkpoints(out)]
    assert kept[-1] == 'checkpoint-24', kept
    assert len(kept) < 12, f'twelve checkpoints cannot fit on 16 MiB: {kept}'
    assert get_last_checkpoint(str(out)) == str(out / 'checkpoint-24') == diskguard.latest_complete(out)
    resume(out, max_steps=28)
    assert_all_complete(out)
    assert checkpoints(out)[-1].name == 'checkpoint-28'


def test_with_save_total_limit_both_rotations_coexist(tmp_path: Path) -> None:
    """save_total_limit=3 peaks at four checkpoints, which a 12 MiB disk cannot hold: the guard makes
    room before the fourth, the Trainer's rotation finds nothing more to delete."""
    with mounted_tmpfs(tmp_path / 'disk', size='12m', nr_inodes=None) as disk:
        out = disk / 'out'
        run = trainer(out, [guard_callback()], save_total_limit=3)
        warned = train_on_a_full_disk(run)
        assert [w for w in warned if 'to make room from now on' in w], warned
        assert run.state.global_step == 24
        assert_all_complete(out)
        kept = [p.name for p in checkpoints(out)]
        assert kept[-1] == 'checkpoint-24' and len(kept) <= 3, kept
        resume(out, max_steps=28, save_total_limit=3)
        assert_all_complete(out)


def test_a_save_that_cannot_fit_is_vetoed_and_the_run_stops(small_disk: Path) -> None:
    out = small_disk / 'out'
    out.mkdir()
    # Someone else's 13 MiB: not a checkpoint, so nothing the guard may delete; 3 MB do not fit.
    (small_disk / 'dataset.bin').write_bytes(b'\1' * 13 * MiB)
    callback = guard_callback()
    run = trainer(out, [callback])
    warned = train_on_a_full_disk(run)
    vetoes = [w for w in warned if 'the Trainer skips this save' in w]
    assert len(vetoes) == 1 and vetoes[0].startswith(f'not saving {out / "checkpoint-2"}:'), warned
    assert run.state.global_step == 2, 'the run stops at the vetoed save'
    assert checkpoints(out) == [], 'nothing written, so nothing partial'
    assert callback.guard is not None and callback.guard.stop_reason is not None


class FillAtStep(TrainerCallback):
    """At one step, another process writes a file that leaves ``leave`` bytes free."""

    def __init__(self, disk: Path, step: int, leave: int) -> None:
        self.disk, self.step, self.leave = disk, step, leave

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step != self.step:
            return
        stat = os.statvfs(self.disk)
        nbytes = stat.f_bavail * stat.f_frsize - self.leave
        code = 'import sys; open(sys.argv[1], "wb").write(b"\\1" * int(sys.argv[2]))'
        subprocess.run(
            [sys.executable, '-c', code, str(self.disk / 'other-job.bin'), str(nbytes)],
            check=True,
            timeout=60,
        )


def test_a_second_process_fills_the_disk_mid_run(small_disk: Path) -> None:
    """Another job takes all but 5 MB between two saves: the guard deletes older checkpoints to
    make room, or vetoes and stops; the run never crashes and what is left resumes."""
    out = small_disk / 'out'
    callback = guard_callback()
    run = trainer(out, [FillAtStep(small_disk, step=7, leave=5 * MiB), callback])
    warned = train_on_a_full_disk(run)
    made_room = [w for w in warned if 'to make room from now on' in w]
    stopped = run.state.global_step < 24 and callback.guard is not None and callback.guard.stop_reason
    assert made_room or stopped, warned
    assert (small_disk / 'other-job.bin').stat().st_size > 0
    assert_all_complete(out)
    assert checkpoints(out), 'the newest complete checkpoint is never deleted'
    resume(out, max_steps=run.state.global_step + 2)
    assert_all_complete(out)


def simulate_crash_mid_save(complete: Path, step: int) -> Path:
    """checkpoint-``step`` as a crash leaves it: the files written so far, truncated, and no
    trainer_state.json (the Trainer writes it last)."""
    partial = complete.parent / f'checkpoint-{step}'
    partial.mkdir()
    for source in complete.iterdir():
        if source.name != 'trainer_state.json':
            data = source.read_bytes()
            (partial / source.name).write_bytes(data[: len(data) // 2])
    return partial


def test_get_last_checkpoint_skips_the_partial_folder_that_transformers_returns(tmp_path: Path) -> None:
    out = tmp_path / 'out'
    first = trainer(out, [], max_steps=4)
    first.train()
    first.save_model()  # a final model in output_dir itself: not a checkpoint to resume from
    partial = simulate_crash_mid_save(out / 'checkpoint-4', step=6)

    assert hf_get_last_checkpoint(str(out)) == str(partial)
    assert get_last_checkpoint(str(out)) == str(out / 'checkpoint-4')
    assert isinstance(get_last_checkpoint(out), str)
    with pytest.raises(Exception):  # noqa: B017 -- what transformers' pick leads to, whatever it raises
        trainer(out, [], max_steps=8).train(resume_from_checkpoint=hf_get_last_checkpoint(str(out)))
    resumed = trainer(out, [], max_steps=8)
    resumed.train(resume_from_checkpoint=get_last_checkpoint(str(out)))
    assert resumed.state.global_step == 8


def test_the_final_model_in_output_dir_is_neither_resumed_from_nor_counted_by_retention(
    tmp_path: Path,
) -> None:
    """``trainer.save_model()`` leaves the weights (``model.safetensors``) and ``training_args.bin``
    in output_dir itself, the newest files there: they are parts of a saved model, not checkpoints,
    so ``latest_complete`` returns the newest ``checkpoint-N`` and ``KeepLast(1)`` keeps it instead
    of keeping ``training_args.bin``."""
    out = tmp_path / 'out'
    first = trainer(out, [], max_steps=4)
    first.train()
    first.save_model()
    assert {'model.safetensors', 'training_args.bin'} <= {p.name for p in out.iterdir()}

    assert diskguard.latest_complete(out) == str(out / 'checkpoint-4')
    decided = diskguard.plan(out, diskguard.RetentionPolicy(diskguard.KeepLast(1)))
    assert {item.name: item.action for item in decided.items} == {
        'checkpoint-2': 'delete',
        'checkpoint-4': 'keep',
    }
    resumed = trainer(out, [], max_steps=6)
    resumed.train(resume_from_checkpoint=diskguard.latest_complete(out))
    assert resumed.state.global_step == 6


def test_get_last_checkpoint_has_the_none_and_error_semantics_of_transformers(tmp_path: Path) -> None:
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'checkpoint-x').mkdir()  # not a step: transformers ignores it too
    assert hf_get_last_checkpoint(str(empty)) is None
    assert get_last_checkpoint(str(empty)) is None
    only_partial = tmp_path / 'partial'
    (only_partial / 'checkpoint-3').mkdir(parents=True)
    assert get_last_checkpoint(str(only_partial)) is None
    for function in (hf_get_last_checkpoint, get_last_checkpoint):
        with pytest.raises(FileNotFoundError):
            function(str(tmp_path / 'missing'))


def test_the_disk_figures_are_in_the_log_history(tmp_path: Path) -> None:
    run = trainer(tmp_path / 'out', [guard_callback()], max_steps=4)
    run.train()
    step_records = [r for r in run.state.log_history if 'loss' in r]
    assert step_records
    for record in step_records:
        assert record['disk/free_bytes'] > 0
        assert 0 < record['disk/used_percent'] < 100
    silent = trainer(tmp_path / 'silent', [guard_callback(log_metrics=False)], max_steps=4)
    silent.train()
    assert not [k for r in silent.state.log_history for k in r if k.startswith('disk/')]


def test_each_step_record_carries_figures_measured_at_that_step(tmp_path: Path) -> None:
    """On a disk far from every threshold (a tmpfs that may grow to 2 TiB), where a step's check
    grades figures measured up to 50 ms before, the step whose record the Trainer logs measures:
    with 128 KiB written at every step, each record has less free room than the one before."""
    with mounted_tmpfs(tmp_path / 'big', size='2T', nr_inodes=None) as big:

        class Fill(TrainerCallback):
            def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
                with open(big / 'filler', 'ab') as f:
                    f.write(b'x' * 128 * 1024)

        run = trainer(
            big / 'out', [Fill(), guard_callback()], max_steps=8, logging_steps=1, save_strategy='no'
        )
        run.train()
    free = [r['disk/free_bytes'] for r in run.state.log_history if 'loss' in r]
    assert len(free) == 8 and free == sorted(free, reverse=True) and len(set(free)) == len(free), free


def test_the_disk_figures_reach_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = trainer(tmp_path / 'out', [guard_callback()], max_steps=4, report_to='tensorboard')
    run.train()
    (events,) = {p.parent for p in tmp_path.rglob('events.out.tfevents.*')}
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = accumulator.Tags()['scalars']
    assert 'train/disk/free_bytes' in tags, tags
    assert {event.step for event in accumulator.Scalars('train/disk/used_percent')} == {2, 4}


def test_the_callback_state_is_json_in_trainer_state_and_restores(tmp_path: Path) -> None:
    """trainer_state.json holds the callback's arguments (so the Trainer can rebuild it) and
    nothing that changes during a run."""
    out = tmp_path / 'out'
    trainer(out, [guard_callback(min_free='1MiB')], max_steps=4).train()
    stored = json.loads((out / 'checkpoint-4' / 'trainer_state.json').read_text())
    state = stored['stateful_callbacks']['DiskGuardCallback']
    assert state == {
        'args': {'path': None, 'log_metrics': True, 'check_every_steps': 1, 'min_free': '1MiB'},
        'attributes': {},
    }

    fresh = guard_callback(min_free='1MiB')
    resumed = trainer(out, [fresh], max_steps=6, restore_callback_states_from_checkpoint=True)
    resumed.train(resume_from_checkpoint=str(out / 'checkpoint-4'))
    (restored,) = [cb for cb in resumed.callback_handler.callbacks if isinstance(cb, DiskGuardCallback)]
    assert restored is not fresh, 'the Trainer rebuilt it from trainer_state.json'
    assert restored.guard_options == {'check_every_steps': 1, 'min_free': '1MiB'}
    assert restored.guard is not None and restored.guard.status().saves == 1  # checkpoint-6


class Interrupt(TrainerCallback):
    """Ends the process's training at the start of one step, as a preemption does."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step + 1 == self.step:
            raise KeyboardInterrupt(f'preempted before step {self.step}')


def without_disk_keys(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A log history with the disk figures (which differ from run to run) and the summary's
    timings and loss over the steps this process ran (as transformers' own resume test) left out."""
    volatile = ('train_runtime', 'train_samples_per_second', 'train_steps_per_second', 'train_loss')
    return [
        {k: v for k, v in record.items() if not k.startswith('disk/') and k not in volatile}
        for record in history
    ]


def test_a_resumed_run_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    """Interrupted after checkpoint-4 and resumed from it (without
    restore_callback_states_from_checkpoint), the run ends with the same log history, disk figures
    aside, and stores the same callback state as the run that was not interrupted; the final
    summary record carries no disk figures."""
    whole = trainer(tmp_path / 'whole', [guard_callback()], max_steps=8)
    whole.train()

    out = tmp_path / 'interrupted'
    with pytest.raises(KeyboardInterrupt):
        trainer(out, [guard_callback(), Interrupt(5)], max_steps=8).train()
    assert [p.name for p in checkpoints(out)] == ['checkpoint-2', 'checkpoint-4']
    resumed = trainer(out, [guard_callback()], max_steps=8)
    resumed.train(resume_from_checkpoint=str(out / 'checkpoint-4'))

    assert 'train_runtime' in whole.state.log_history[-1]
    assert not [k for k in whole.state.log_history[-1] if k.startswith('disk/')]
    assert [k for r in whole.state.log_history if 'loss' in r for k in r if k.startswith('disk/')]
    assert without_disk_keys(resumed.state.log_history) == without_disk_keys(whole.state.log_history)
    for step in (4, 6, 8):
        a = json.loads((tmp_path / 'whole' / f'checkpoint-{step}' / 'trainer_state.json').read_text())
        b = json.loads((out / f'checkpoint-{step}' / 'trainer_state.json').read_text())
        assert a['stateful_callbacks'] == b['stateful_callbacks'], step
        assert without_disk_keys(a.pop('log_history')) == without_disk_keys(b.pop('log_history')), step
        assert a == b, step


def test_a_stop_is_recorded_in_the_final_log_record_and_returned_by_train(small_disk: Path) -> None:
    out = small_disk / 'out'
    out.mkdir()
    (small_disk / 'dataset.bin').write_bytes(b'\1' * 13 * MiB)
    callback = guard_callback()
    run = trainer(out, [callback])
    with pytest.warns(diskguard.DiskSpaceWarning):
        output = run.train()
    assert run.state.global_step == 2
    assert callback.guard is not None and callback.stop_reason
    assert callback.stop_reason == callback.guard.stop_reason
    expected = f'stopped at step 2: {callback.stop_reason}'
    assert output.metrics['diskguard_stop'] == expected
    assert run.state.log_history[-1]['diskguard_stop'] == expected
    assert 'train_runtime' in run.state.log_history[-1]

    (small_disk / 'dataset.bin').unlink()
    finished = trainer(small_disk / 'other', [callback], max_steps=2)
    output = finished.train()
    assert 'diskguard_stop' not in output.metrics and callback.stop_reason is None


def du(directory: Path) -> int:
    """Bytes allocated under ``directory``, itself included (as the guard counts what it holds)."""
    total = directory.lstat().st_blocks * 512
    for path in directory.rglob('*'):
        total += path.lstat().st_blocks * 512
    return total


class CompareHeld(TrainerCallback):
    """After each save (and the Trainer's rotation), what the guard says the run holds against
    what the directory holds."""

    def __init__(self, callback: DiskGuardCallback, output_dir: Path) -> None:
        self.callback, self.output_dir = callback, output_dir
        self.seen: list[tuple[int, int]] = []

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.callback.guard is not None
        self.seen.append((self.callback.guard.status().held, du(self.output_dir)))


def test_what_the_run_holds_follows_save_total_limit(tmp_path: Path) -> None:
    out = tmp_path / 'out'
    callback = guard_callback()
    compare = CompareHeld(callback, out)
    trainer(out, [callback, compare], max_steps=12, save_total_limit=2).train()
    assert len(checkpoints(out)) == 2 and len(compare.seen) == 6
    assert all(abs(held - on_disk) <= 64 * 1024 for held, on_disk in compare.seen), compare.seen

    # Resumed, the guard measures the directory afresh and follows the rotation from there.
    callback = guard_callback()
    compare = CompareHeld(callback, out)
    trainer(out, [callback, compare], max_steps=16, save_total_limit=2).train(
        resume_from_checkpoint=str(out / 'checkpoint-12')
    )
    assert len(compare.seen) == 2
    assert all(abs(held - on_disk) <= 64 * 1024 for held, on_disk in compare.seen), compare.seen


def test_warnings_point_at_the_users_code(small_disk: Path) -> None:
    """The guard's and the callback's warnings name the line that called ``train()`` (here, this
    file), not transformers' ``call_event``."""
    out = small_disk / 'out'
    out.mkdir()
    (small_disk / 'dataset.bin').write_bytes(b'\1' * 13 * MiB)
    run = trainer(out, [guard_callback()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        run.train()
    ours = [w for w in caught if issubclass(w.category, diskguard.DiskSpaceWarning)]
    assert len(ours) >= 2, [str(w.message) for w in ours]
    assert [w.filename for w in ours] == [__file__] * len(ours), [(w.filename, w.lineno) for w in ours]


def test_the_best_checkpoint_is_never_deleted_to_make_room(small_disk: Path) -> None:
    out = small_disk / 'out'
    run = Trainer(
        model=TinyRegressor(),
        args=arguments(
            out,
            eval_strategy='steps',
            eval_steps=2,
            metric_for_best_model='loss',
            greater_is_better=True,  # the worst loss: an early checkpoint, under pressure later
            label_names=['y'],
            load_best_model_at_end=True,
        ),
        train_dataset=dataset(),
        eval_dataset=dataset(16),
        callbacks=[guard_callback()],
    )
    train_on_a_full_disk(run)  # load_best_model_at_end loads the best folder: it must still be there
    best = run.state.best_model_checkpoint
    assert best is not None
    kept = [p.name for p in checkpoints(out)]
    # The oldest would go first to make room; the best one stays however old it is.
    assert Path(best).name in kept and Path(best).name != 'checkpoint-24' and len(kept) < 12, (best, kept)
    assert (Path(best) / 'trainer_state.json').is_file()
    assert_all_complete(out)


def test_bad_arguments_are_refused_when_the_callback_is_made() -> None:
    with pytest.raises(
        TypeError, match='chek_every_steps: it takes path, log_metrics and .*check_every_steps'
    ):
        DiskGuardCallback(chek_every_steps=5)
    with pytest.raises(TypeError, match='rank.*args.process_index'):
        DiskGuardCallback(rank=1)
    with pytest.raises(TypeError, match='path=5: expected None .*output_dir.* got int'):
        DiskGuardCallback(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='log_metrics=1'):
        DiskGuardCallback(log_metrics=1)  # type: ignore[arg-type]


def test_import_needs_transformers_and_import_diskguard_does_not_import_it() -> None:
    code = (
        'import sys; sys.modules["transformers"] = None\n'
        'import diskguard\n'
        'assert "torch" not in sys.modules\n'
        'try:\n'
        '    import diskguard.transformers\n'
        'except ImportError as err:\n'
        '    print(err)\n'
    )
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'diskguard.transformers needs the transformers package' in result.stdout
    loaded = subprocess.run(
        [
            sys.executable,
            '-c',
            'import sys, diskguard; print(sorted({"transformers", "torch"} & set(sys.modules)))',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout.strip() == '[]'


WORKER = Path(__file__).with_name('hf_ddp_worker.py')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port: int = probe.getsockname()[1]
        return port


def train_on_two_ranks(output_dir: Path, results: Path) -> list[dict[str, Any]]:
    """The worker under torchrun, 2 CPU processes over gloo; each rank's report."""
    results.mkdir()
    command = [
        sys.executable,
        '-m',
        'torch.distributed.run',
        '--nproc_per_node',
        '2',
        '--master_port',
        str(free_port()),
        str(WORKER),
        str(output_dir),
        str(results),
    ]
    environment = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(WORKER.parent)}
    # A session of its own, so a hang is ended with every rank, not just torchrun.
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,
    ) as launcher:
        try:
            stdout, stderr = launcher.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            stdout, stderr = launcher.communicate()
            pytest.fail(f'the ranks hung (killed after 150 s):\n{stdout[-2000:]}\n{stderr[-4000:]}')
    assert launcher.returncode == 0, stdout[-2000:] + stderr[-4000:]
    return [json.loads((results / f'rank-{rank}.json').read_text()) for rank in (0, 1)]


def test_two_ranks_veto_the_same_save_and_stop_at_the_same_step(small_disk: Path, tmp_path: Path) -> None:
    """Only rank 0 measures the (node-local) disk and is refused; rank 1, which would have written
    its rng_state_1.pth into the folder, skips the save too, and both stop at step 2."""
    out = small_disk / 'out'
    out.mkdir()
    (small_disk / 'dataset.bin').write_bytes(b'\1' * 13 * MiB)
    ranks = train_on_two_ranks(out, tmp_path / 'results')
    assert [r['world_size'] for r in ranks] == [2, 2]
    assert [r['global_step'] for r in ranks] == [2, 2]
    assert [r['deletes'] for r in ranks] == [True, False], 'one deleter'
    assert checkpoints(out) == [], 'no rank wrote a partial checkpoint-2'
    assert [w for w in ranks[0]['warnings'] if 'the Trainer skips this save' in w]
    assert not [w for w in ranks[1]['warnings'] if 'DiskSpaceWarning' in w or 'disk level' in w]


def test_each_rank_counts_its_own_part_of_the_checkpoint_folder(tmp_path: Path) -> None:
    """What each rank gives the collective pre-flight (Trainer._save_checkpoint): process zero the
    whole folder's estimate, another rank under DDP only its rng_state_N.pth, and under FSDP or
    DeepSpeed the shards it holds (here: its parameters and optimizer state) besides."""
    from types import SimpleNamespace

    from diskguard.transformers import _RNG_STATE_BYTES

    guard = diskguard.DiskGuard(tmp_path, sync=None)
    model = TinyRegressor()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, FEATURES), torch.zeros(1))['loss'].backward()
    optimizer.step()  # the optimizer state exists
    parts = {'model': model, 'optimizer': optimizer}
    weights = sum(p.numel() * p.element_size() for p in model.parameters())

    def part(zero: bool, **sharding: Any) -> int:
        settings = {'world_size': 2, 'fsdp': '', 'deepspeed': None, 'save_only_model': False, **sharding}
        args = SimpleNamespace(**settings)
        state = SimpleNamespace(is_world_process_zero=zero)
        return DiskGuardCallback._part(guard, args, state, parts)  # type: ignore[arg-type]

    assert part(True) == DiskGuardCallback._estimate(guard, arguments(tmp_path), parts) + _RNG_STATE_BYTES
    assert part(False) == _RNG_STATE_BYTES
    for sharded in ({'fsdp': 'full_shard'}, {'deepspeed': 'ds_config.json'}):
        assert part(False, **sharded) >= _RNG_STATE_BYTES + 3 * weights  # weights, Adam's two moments
    guard.close()


def test_two_ranks_on_a_full_disk_finish_with_complete_checkpoints(small_disk: Path, tmp_path: Path) -> None:
    out = small_disk / 'out'
    ranks = train_on_two_ranks(out, tmp_path / 'results')
    assert [r['global_step'] for r in ranks] == [24, 24]
    assert_all_complete(out)
    kept = checkpoints(out)
    assert kept[-1].name == 'checkpoint-24' and len(kept) < 12
    assert all((folder / 'rng_state_1.pth').is_file() for folder in kept)


def test_an_epoch_end_save_that_cannot_fit_is_vetoed(small_disk: Path) -> None:
    out = small_disk / 'out'
    out.mkdir()
    (small_disk / 'dataset.bin').write_bytes(b'\1' * 13 * MiB)
    callback = guard_callback(check_every_steps=1000)  # only the epoch-end sync_stop checks
    run = trainer(out, [callback], max_steps=-1, num_train_epochs=3, save_strategy='epoch')
    warned = train_on_a_full_disk(run)
    assert run.state.global_step == 8, 'stopped after the first epoch (64 samples, batches of 8)'
    assert [w for w in warned if 'the Trainer skips this save' in w], warned
    assert checkpoints(out) == []


def test_a_stop_between_saves_makes_one_final_save_at_that_step(small_disk: Path) -> None:
    """save_steps=5, the disk fills at step 6: the guard (on_full='stop': it deletes nothing) stops
    at step 7 and the Trainer saves checkpoint-7 in the room kept for it, so steps 6 and 7 are not
    lost."""
    out = small_disk / 'out'
    callback = guard_callback(on_full='stop')
    run = trainer(out, [callback, FillAtStep(small_disk, step=6, leave=5 * MiB)], save_steps=5)
    train_on_a_full_disk(run)
    assert callback.guard is not None and callback.guard.stop_reason is not None
    assert run.state.global_step == 7
    assert [p.name for p in checkpoints(out)] == ['checkpoint-5', 'checkpoint-7']
    assert_all_complete(out)


def test_a_callback_reused_for_another_output_dir_guards_that_one(tmp_path: Path) -> None:
    callback = guard_callback()
    trainer(tmp_path / 'first', [callback], max_steps=2).train()
    assert callback.guard is not None and callback.guard.path == str(tmp_path / 'first')
    trainer(tmp_path / 'second', [callback], max_steps=2).train()
    assert callback.guard.path == str(tmp_path / 'second')


def test_attached_to_a_run_resumed_from_a_checkpoint_written_without_it(tmp_path: Path) -> None:
    """The Trainer loads the checkpoint's state, which names no DiskGuardCallback; its first save
    looks the callback's entry up there (a KeyError if nothing added it)."""
    out = tmp_path / 'out'
    trainer(out, [], max_steps=2).train()
    resumed = trainer(out, [guard_callback()], max_steps=4)
    resumed.train(resume_from_checkpoint=str(out / 'checkpoint-2'))
    assert resumed.state.global_step == 4
    stored = json.loads((out / 'checkpoint-4' / 'trainer_state.json').read_text())
    assert stored['stateful_callbacks']['DiskGuardCallback']['attributes'] == {}


def test_the_final_model_of_an_earlier_run_is_never_taken_for_an_old_checkpoint(small_disk: Path) -> None:
    """``trainer.save_model()`` writes the final model into output_dir itself; a later run there
    on a full disk makes room by deleting old checkpoint folders, never that model."""
    out = small_disk / 'out'
    first = trainer(out, [], max_steps=2)
    first.train()
    first.save_model()
    finals = {name: (out / name).read_bytes() for name in ('model.safetensors', 'training_args.bin')}
    warned = train_on_a_full_disk(
        trainer(out, [guard_callback()]), resume_from_checkpoint=str(out / 'checkpoint-2')
    )
    assert [w for w in warned if 'to make room from now on' in w], warned
    assert {name: (out / name).read_bytes() for name in finals} == finals
    assert_all_complete(out)


def test_an_output_dir_that_is_a_symlink_is_guarded_where_it_leads(small_disk: Path, tmp_path: Path) -> None:
    """``output_dir`` a link to scratch space, as on many clusters: the guard (which follows no
    symlink) guards the real directory, and get_last_checkpoint answers as transformers' does."""
    real = small_disk / 'out'
    real.mkdir()
    link = tmp_path / 'out'
    link.symlink_to(real)
    callback = guard_callback()
    warned = train_on_a_full_disk(trainer(link, [callback]))
    assert callback.guard is not None and callback.guard.path == str(real)
    assert [w for w in warned if 'to make room from now on' in w], warned
    assert_all_complete(real)
    assert get_last_checkpoint(str(link)) == hf_get_last_checkpoint(str(link)) == str(link / 'checkpoint-24')


def test_training_again_after_room_was_made_decides_afresh(small_disk: Path) -> None:
    """A run stopped for lack of room; the user deletes what filled the disk and calls train()
    again on the same Trainer: it runs to max_steps instead of stopping at once."""
    out = small_disk / 'out'
    out.mkdir()
    (small_disk / 'dataset.bin').write_bytes(b'\1' * 13 * MiB)
    callback = guard_callback()
    run = trainer(out, [callback])
    train_on_a_full_disk(run)
    assert run.state.global_step == 2
    first_guard = callback.guard
    (small_disk / 'dataset.bin').unlink()
    train_on_a_full_disk(run)
    assert run.state.global_step == 24
    assert callback.guard is not first_guard and callback.guard is not None
    assert callback.guard.stop_reason is None
    assert_all_complete(out)


class SaveAtStep(TrainerCallback):
    """A user's own save rule: a save at one step, whatever save_steps says."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            control.should_save = True


def test_a_save_a_user_callback_asks_for_is_checked_too(small_disk: Path) -> None:
    """User callbacks listed before the guard's set should_save before it is asked; putting the
    disk figures ahead of the reporting integrations must not change that order."""
    out = small_disk / 'out'
    out.mkdir()
    (small_disk / 'dataset.bin').write_bytes(b'\1' * 13 * MiB)
    callback = guard_callback()
    run = trainer(out, [SaveAtStep(3), callback], save_steps=10, report_to='tensorboard')
    warned = train_on_a_full_disk(run)
    names = [type(cb).__name__ for cb in run.callback_handler.callbacks]
    assert names.index('_FiguresBeforeReporters') < names.index('TensorBoardCallback')
    assert names.index('SaveAtStep') < names.index('DiskGuardCallback'), names
    assert run.state.global_step == 3
    assert [w for w in warned if 'checkpoint-3' in w and 'the Trainer skips this save' in w], warned
    assert checkpoints(out) == []


def test_a_save_total_limit_the_disk_cannot_hold_is_named_once_at_train_start(small_disk: Path) -> None:
    """Issue 19.6 for Hugging Face: ``save_total_limit=30`` peaks at 31 checkpoints and a 16 MiB disk
    holds about a dozen even at the weights' size: one warning when training begins, naming the
    setting and what to change, pointing at the ``train()`` line; a limit that fits gets none."""
    for limit, expected in ((30, 1), (2, 0)):
        out = small_disk / f'out-{limit}'
        run = trainer(out, [guard_callback()], save_total_limit=limit, max_steps=2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            run.train()
        named = [w for w in caught if 'save_total_limit' in str(w.message)]
        assert len(named) == expected, [str(w.message) for w in caught]
        for w in named:
            assert issubclass(w.category, diskguard.DiskSpaceWarning) and w.filename == __file__
            assert f'save_total_limit={limit}) holds {limit + 1} checkpoints' in str(w.message)
            assert 'lower save_total_limit to' in str(w.message)
        shutil.rmtree(out)


def test_a_fresh_run_in_a_finished_runs_output_dir_keeps_the_new_checkpoints(tmp_path: Path) -> None:
    """Issue 16: a finished run left checkpoint-2..24; a fresh run (not resumed) saving 2..8 in the
    same output_dir keeps its own newest ones, and the finished run's higher steps go first."""
    out = tmp_path / 'out'
    trainer(out, []).train()
    assert checkpoints(out)[-1].name == 'checkpoint-24'
    fresh = trainer(
        out, [guard_callback(retention=diskguard.RetentionPolicy(diskguard.KeepLast(2)))], max_steps=8
    )
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter('always')
        fresh.train()
    assert [p.name for p in checkpoints(out)] == ['checkpoint-6', 'checkpoint-8']
    assert_all_complete(out)
    named = [str(w.message) for w in warned if 'higher step' in str(w.message)]
    assert len(named) == 1 and 'checkpoint-24' in named[0], named
