"""Log budgets and the rotating handler on a real tmpfs: within budget, and alive through a full disk."""

from __future__ import annotations

import gzip
import logging
import logging.handlers
import os
import re
from collections.abc import Iterator
from pathlib import Path

import diskguard
import pytest
from diskguard import DiskSpaceWarning
from diskguard.logging import RotatingFileHandler

MiB = 1024 * 1024


class Log:
    """Feeds records straight to one handler (pytest attaches capture handlers to loggers)."""

    def __init__(self, handler: logging.Handler) -> None:
        handler.setFormatter(logging.Formatter('%(message)s'))
        self.handler = handler

    def info(self, msg: str, *args: object) -> None:
        self.handler.handle(logging.LogRecord('train', logging.INFO, __file__, 0, msg, args, None))

    def many(self, count: int, msg: str, *args: object) -> None:
        for i in range(count):
            self.info(msg, i, *args)


@pytest.fixture
def handlers() -> Iterator[list[logging.Handler]]:
    made: list[logging.Handler] = []
    yield made
    for handler in made:
        handler.close()


def test_budget_follows_journald_rule_on_a_real_disk(tmpfs: Path) -> None:
    b = diskguard.log_budget(tmpfs)
    assert b.bound == 'fraction', b.explanation
    assert b.total_bytes == 16 * MiB // 10
    assert b.max_bytes == b.total_bytes // 8 and b.backup_count == 7
    assert b.explanation == 'bound by max_use_fraction=0.1 of the 16.0 MiB filesystem'
    (tmpfs / 'filler').write_bytes(b'\0' * (13 * MiB))  # 3 MiB left, 2.4 MiB kept free
    b = diskguard.log_budget(tmpfs / 'logs')
    assert b.bound == 'keep_free'
    assert b.total_bytes == b.usage.avail - int(16 * MiB * 0.15)
    assert diskguard.log_budget(tmpfs, current_usage='512KiB').total_bytes == b.total_bytes + MiB // 2
    (tmpfs / 'filler').write_bytes(b'\0' * (16 * MiB - 4096))
    b = diskguard.log_budget(tmpfs)
    assert (b.bound, b.total_bytes, b.max_bytes, b.backup_count) == ('floor', 128 * 1024, 64 * 1024, 1)


def test_budget_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r'max_use_fraction=1\.5: expected a fraction in \(0, 1\]'):
        diskguard.log_budget('/', max_use_fraction=1.5)
    with pytest.raises(ValueError, match="keep_free='lots': expected a non-negative byte count"):
        diskguard.log_budget('/', keep_free='lots')
    with pytest.raises(ValueError, match='max_file_size=0'):
        diskguard.log_budget('/', max_file_size=0)


@pytest.mark.parametrize('compress', [False, True], ids=['plain', 'gzip'])
def test_footprint_stays_within_budget(tmpfs: Path, handlers: list[logging.Handler], compress: bool) -> None:
    handler = RotatingFileHandler.from_budget(tmpfs / 'train.log', max_use_fraction=0.25, compress=compress)
    handlers.append(handler)
    budget = handler.budget
    assert budget is not None and budget.total_bytes == 4 * MiB
    line = os.urandom(60).hex()  # random, so gzip cannot hide an overrun
    Log(handler).many(100_000, '%d %s', line)  # about 12 MiB of records, three times the budget
    assert handler.dropped == 0
    assert handler.footprint() <= budget.total_bytes
    rotated = handler.rotated_files()
    assert rotated, 'it rotated'
    assert all(name.endswith('.gz') == compress for name in rotated)
    if compress:
        with gzip.open(rotated[0], 'rt') as f:
            assert f.readline().split()[1] == line
    newest = (tmpfs / 'train.log').read_text().splitlines()[-1]
    assert newest == f'99999 {line}'


def complete_records(path: Path) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r'^rec-(\d+)-\w+-END$', path.read_text(), re.MULTILINE)]


def test_full_disk_never_raises_counts_drops_and_resumes(
    tmpfs: Path, handlers: list[logging.Handler], capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmpfs / 'run.log'
    handler = RotatingFileHandler(log_file, maxBytes=64 * MiB, backupCount=1, retry_interval=0)
    handlers.append(handler)
    log = Log(handler)
    filler = tmpfs / 'filler'
    filler.write_bytes(b'\0' * (16 * MiB - 64 * 1024))  # 64 KiB left
    sent = 3000  # about 300 KiB of records
    with pytest.warns(DiskSpaceWarning, match='the disk is full') as caught:
        log.many(sent, 'rec-%d-%s-END', 'x' * 80)
    assert len([w for w in caught if issubclass(w.category, DiskSpaceWarning)]) == 1, 'warned once'
    assert 'Logging error' not in capsys.readouterr().err, 'no traceback per record'
    written = complete_records(log_file)
    assert written == list(range(len(written))), 'what was written is in order, nothing duplicated'
    assert 0 < len(written) < sent
    assert handler.dropped == sent - len(written)

    filler.unlink()
    log.info('rec-%d-%s-END', sent, 'after')
    handler.flush()
    lines = log_file.read_text().splitlines()
    assert lines[-2] == f'{handler.dropped} log record(s) were dropped while the disk was full'
    assert lines[-1] == f'rec-{sent}-after-END'
    assert handler.dropped == sent - len(written), 'nothing more lost after space returned'


def test_paused_handler_drops_without_touching_the_disk(tmpfs: Path, handlers: list[logging.Handler]) -> None:
    log_file = tmpfs / 'run.log'
    handler = RotatingFileHandler(log_file, maxBytes=64 * MiB, backupCount=1, retry_interval=3600)
    handlers.append(handler)
    log = Log(handler)
    (tmpfs / 'filler').write_bytes(b'\0' * (16 * MiB - 8192))
    with pytest.warns(DiskSpaceWarning):
        log.many(500, 'rec-%d-%s-END', 'y' * 100)
    size = log_file.stat().st_size
    (tmpfs / 'filler').unlink()
    log.many(10, 'during the pause %d')
    assert log_file.stat().st_size == size, 'within retry_interval nothing is written'
    assert handler.dropped == 500 + 10 - len(complete_records(log_file))


def test_rotation_that_hits_enospc_leaves_no_partial_gzip(
    tmpfs: Path, handlers: list[logging.Handler]
) -> None:
    log_file = tmpfs / 'run.log'
    handler = RotatingFileHandler(log_file, maxBytes=2 * MiB, backupCount=3, compress=True, retry_interval=0)
    handlers.append(handler)
    log = Log(handler)
    first = os.urandom(1000).hex()
    log.info(first)
    while log_file.stat().st_size < 2 * MiB - 4096:
        log.info(os.urandom(1000).hex())  # random lines: the archive will be about half the size
    (tmpfs / 'filler').write_bytes(b'\0' * (diskguard.usage(tmpfs).avail - 256 * 1024))
    with pytest.warns(DiskSpaceWarning):
        log.many(20, '%d %s', os.urandom(1000).hex())  # these trigger a rollover whose gzip cannot fit
    assert not (tmpfs / 'run.log.1.gz').exists(), 'the partial archive was removed'
    assert log_file.exists() and handler.dropped > 0
    (tmpfs / 'filler').unlink()
    log.info('back')
    assert (tmpfs / 'run.log.1.gz').exists(), 'rotation succeeds once there is room'
    with gzip.open(tmpfs / 'run.log.1.gz', 'rt') as f:
        assert f.readline().strip() == first


def test_budget_shrinks_as_the_disk_fills(tmpfs: Path, handlers: list[logging.Handler]) -> None:
    handler = RotatingFileHandler.from_budget(tmpfs / 'a.log', max_use_fraction=0.5, resize_interval=0)
    handlers.append(handler)
    assert handler.budget is not None and handler.budget.bound == 'fraction'
    first = handler.maxBytes
    (tmpfs / 'filler').write_bytes(b'\0' * (12 * MiB))
    Log(handler).info('resize now')
    assert handler.budget.bound == 'keep_free', handler.budget.explanation
    assert handler.maxBytes < first and handler.max_total_bytes == handler.budget.total_bytes


def test_unbounded_configuration_is_warned_about(tmp_path: Path) -> None:
    with pytest.warns(DiskSpaceWarning, match='grows without bound'):
        RotatingFileHandler(tmp_path / 'x.log').close()
    with pytest.warns(DiskSpaceWarning, match='backupCount=0 never rotates'):
        RotatingFileHandler(tmp_path / 'y.log', maxBytes=1024).close()


def test_other_errors_still_reach_handle_error(
    tmp_path: Path, handlers: list[logging.Handler], capsys: pytest.CaptureFixture[str]
) -> None:
    handler = RotatingFileHandler(tmp_path / 'z.log', maxBytes=1024, backupCount=1)
    handlers.append(handler)
    Log(handler).info('%d', 'not a number')
    assert '--- Logging error ---' in capsys.readouterr().err
    assert handler.dropped == 0, 'only disk-full failures are counted as drops'


def test_is_a_drop_in_subclass(tmp_path: Path) -> None:
    handler = RotatingFileHandler(tmp_path / 'd.log', 'a', 1000, 2, 'utf-8', True)
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    assert (handler.maxBytes, handler.backupCount) == (1000, 2)
    handler.close()
