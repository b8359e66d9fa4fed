"""DiskGuard's options as one record on one path to the core, and the one rule for which options a
framework callback refuses (the framework sets them)."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import warnings
from pathlib import Path

import diskguard
import pytest
from diskguard._integration import callback_options, set_by_framework
from diskguard._options import GuardOptions, option_names


def test_the_record_and_diskguards_signature_list_the_same_options_and_defaults() -> None:
    parameters = dict(inspect.signature(diskguard.DiskGuard).parameters)
    del parameters['path']
    assert list(parameters) == list(option_names())
    for field in dataclasses.fields(GuardOptions):
        assert parameters[field.name].default == field.default, field.name


def test_the_record_is_frozen_prints_pickles_and_compares() -> None:
    options = GuardOptions(min_free='1GiB', watch=('/dev/shm',))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.min_free = 5  # type: ignore[misc]
    assert "min_free='1GiB'" in repr(options)
    assert pickle.loads(pickle.dumps(options)) == options
    assert options.replace(rank=1) != options and options.replace(rank=1).rank == 1


def test_a_guard_pickles_with_its_options(tmp_path: Path) -> None:
    guard = diskguard.DiskGuard(tmp_path, min_free='1MiB', watch=[tmp_path], check_every_steps=7)
    back = pickle.loads(pickle.dumps(guard))
    assert back._options == guard._options and back._options.watch == (str(tmp_path),)
    assert back.path == guard.path and back.step() is False


def test_values_are_checked_by_the_core_once_by_name(tmp_path: Path) -> None:
    # The record takes any value; the core refuses it when the guard is built, naming it.
    options = GuardOptions(hysteresis=0.9)
    with pytest.raises(ValueError, match=r'^hysteresis=0\.9: expected a fraction in \[0, 0\.5\)'):
        diskguard.DiskGuard(tmp_path, **options.as_kwargs())
    with pytest.raises(TypeError, match="^watch='/tmp': expected a list of paths, got str"):
        diskguard.DiskGuard(tmp_path, watch='/tmp')


@pytest.mark.parametrize(
    ('reduces_stop', 'refused'),
    [(True, ['rank', 'local_rank', 'world_size', 'sync']), (False, ['rank', 'local_rank', 'world_size'])],
)
def test_one_rule_says_which_options_the_framework_sets(reduces_stop: bool, refused: list[str]) -> None:
    assert list(set_by_framework(reduces_stop)) == refused
    for name in refused:
        with pytest.raises(TypeError, match=rf'^DiskGuardCallback got {name}: the trainer sets it; do not'):
            callback_options(True, {name: 1}, reduces_stop=reduces_stop, source='the trainer sets it')
    if 'sync' not in refused:
        assert callback_options(True, {'sync': None}, reduces_stop=reduces_stop, source='').sync is None


def test_an_unknown_option_is_refused_by_name_with_what_is_taken() -> None:
    with pytest.raises(
        TypeError, match=r'unexpected keyword argument\(s\) stop_belw: it takes path, log_metrics'
    ):
        callback_options(True, {'stop_belw': 1}, reduces_stop=True, source='')


# ----- the two callbacks (need their frameworks) -----


@pytest.mark.torch
def test_lightning_refuses_sync_and_the_ranks_naming_the_argument() -> None:
    pytest.importorskip('torch')
    lightning = pytest.importorskip('diskguard.lightning')
    with pytest.raises(
        TypeError, match=r"^DiskGuardCallback got sync: the ranks and the stop's reduction come"
    ):
        lightning.DiskGuardCallback(sync=None)
    with pytest.raises(TypeError, match=r'^DiskGuardCallback got local_rank, rank: .*trainer.global_rank'):
        lightning.DiskGuardCallback(rank=0, local_rank=0)
    callback = lightning.DiskGuardCallback(min_free='1GiB')
    assert callback.guard_options == {'min_free': '1GiB'} and callback._options.min_free == '1GiB'
    with pytest.raises(TypeError):
        callback.guard_options['budget'] = '1GiB'  # type: ignore[index]  # checked once, when made


@pytest.mark.torch
def test_hugging_face_takes_sync_refuses_the_ranks_and_names_its_pass_through_guard_options() -> None:
    pytest.importorskip('torch')
    transformers = pytest.importorskip('diskguard.transformers')
    callback = transformers.DiskGuardCallback(sync=None, min_free='1GiB')
    assert callback.guard_options == {'sync': None, 'min_free': '1GiB'}
    assert callback._options.sync is None
    with pytest.raises(
        TypeError, match=r'^DiskGuardCallback got world_size: the ranks come from the Trainer'
    ):
        transformers.DiskGuardCallback(world_size=2)


@pytest.mark.torch
def test_hugging_faces_former_guard_kwargs_still_reads_with_a_deprecation_warning() -> None:
    pytest.importorskip('torch')
    transformers = pytest.importorskip('diskguard.transformers')
    callback = transformers.DiskGuardCallback(min_free='1GiB')
    with pytest.warns(DeprecationWarning, match='guard_kwargs is deprecated: use guard_options'):
        assert callback.guard_kwargs == {'min_free': '1GiB'}
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert callback.guard_options == {'min_free': '1GiB'}
