"""Log budgets and the rotating handler on a real tmpfs: within budget, and alive through a full disk."""

from __future__ import annotations

import errno
import gzip
import logging
import logging.handlers
import os
import re
from collections.abc import Iterator
from pathlib import Path

import diskguard
import pytest
from conftest import QUOTA_LIMIT
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

    def random(self, count: int, nbytes: int) -> None:
        """``rec-<i>-<random hex>-END`` records, each different, so gzip cannot shrink them much."""
        for i in range(count):
            self.info('rec-%d-%s-END', i, os.urandom(nbytes).hex())


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
    text = log_file.read_text()
    lines = text.splitlines()
    assert re.fullmatch(r'\d+ log record\(s\) were dropped while the disk was full', lines[-2])
    assert lines[-1] == f'rec-{sent}-after-END'
    # Cutting off a record the disk cut short can leave room for a notice mid-episode: every drop
    # is reported once, whatever the number of notices.
    notices = re.findall(r'^(\d+) log record\(s\) were dropped', text, re.MULTILINE)
    assert sum(map(int, notices)) == handler.dropped
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


def test_rotation_never_writes_through_a_planted_symlink(
    tmp_path: Path, handlers: list[logging.Handler]
) -> None:
    """A dangling symlink at the next archive's name (``run.log.1.gz -> elsewhere``, planted in a
    shared log directory) passes the base class's ``os.path.exists`` check: opening it would create
    the file it points to, with the log's content."""
    log_file = tmp_path / 'run.log'
    elsewhere = tmp_path / 'elsewhere'
    (tmp_path / 'run.log.1.gz').symlink_to(elsewhere)
    handler = RotatingFileHandler(log_file, maxBytes=4096, backupCount=2, compress=True, retry_interval=0)
    handlers.append(handler)
    log = Log(handler)
    first = 'x' * 100
    log.info(first)
    log.many(60, '%d %s', 'y' * 100)

    assert not elsewhere.exists()
    archive = tmp_path / 'run.log.1.gz'
    assert archive.is_file() and not archive.is_symlink()
    with gzip.open(archive, 'rt') as f:
        assert f.readline().strip() == first


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


@pytest.mark.parametrize('compress', [False, True], ids=['plain', 'gzip'])
def test_own_rotated_files_filling_the_disk_are_vacuumed_before_a_record_is_dropped(
    tmpfs: Path, handlers: list[logging.Handler], compress: bool
) -> None:
    # Twenty 2 MiB files (about 1 MiB each gzipped) are more than the 16 MiB disk holds: without
    # vacuuming, every record after the disk fills would be dropped forever.
    handler = RotatingFileHandler(
        tmpfs / 'run.log', maxBytes=2 * MiB, backupCount=20, retry_interval=0, compress=compress
    )
    handlers.append(handler)
    log = Log(handler)
    with pytest.warns(DiskSpaceWarning, match=r'oldest rotated log .*run\.log\.\d+(\.gz)? was deleted'):
        log.random(40_000, 500)  # about 40 MiB, random so gzip cannot make it fit
    assert handler.dropped == 0
    assert handler.vacuumed and all(name.startswith(str(tmpfs / 'run.log.')) for name in handler.vacuumed)
    assert all(name.endswith('.gz') == compress for name in handler.vacuumed)
    assert len(handler.rotated_files()) < 20
    newest = complete_records(tmpfs / 'run.log')
    assert newest[-1] == 39_999 and newest == list(range(newest[0], 40_000)), 'nothing lost, no fragment'
    assert (tmpfs / 'run.log').read_text().endswith('-END\n')


def test_a_full_disk_with_nothing_left_to_vacuum_still_drops_and_warns(
    tmpfs: Path, handlers: list[logging.Handler]
) -> None:
    handler = RotatingFileHandler(tmpfs / 'run.log', maxBytes=64 * MiB, backupCount=3, retry_interval=0)
    handlers.append(handler)
    (tmpfs / 'not-ours').write_bytes(b'\0' * (16 * MiB - 64 * 1024))
    with pytest.warns(DiskSpaceWarning, match='the disk is full'):
        Log(handler).many(2000, 'rec-%d-%s-END', 'q' * 100)
    assert handler.dropped > 0 and handler.vacuumed == []
    assert (tmpfs / 'not-ours').exists(), 'only its own rotated files are ever deleted'


BAD_ARGUMENTS = [
    ({'maxBytes': True}, TypeError, 'maxBytes=True: expected a whole byte count >= 0'),
    ({'maxBytes': -1}, ValueError, 'maxBytes=-1: expected a whole byte count'),
    ({'maxBytes': float('nan')}, ValueError, 'maxBytes=nan'),
    ({'maxBytes': float('inf')}, ValueError, 'maxBytes=inf'),
    ({'maxBytes': '1MiB'}, TypeError, "maxBytes='1MiB'"),
    ({'backupCount': 1.5}, TypeError, 'backupCount=1.5: expected a whole number >= 0, got float'),
    ({'backupCount': False}, TypeError, 'backupCount=False'),
    ({'backupCount': -2}, ValueError, 'backupCount=-2'),
    ({'max_total_bytes': float('nan')}, ValueError, 'max_total_bytes=nan'),
    ({'max_total_bytes': -1}, ValueError, 'max_total_bytes=-1'),
    ({'max_total_bytes': True}, TypeError, 'max_total_bytes=True'),
    ({'max_total_bytes': '1GiB'}, TypeError, "max_total_bytes='1GiB'"),
    ({'retry_interval': float('nan')}, ValueError, 'retry_interval=nan: expected finite seconds >= 0'),
    ({'retry_interval': float('inf')}, ValueError, 'retry_interval=inf'),
    ({'retry_interval': -1}, ValueError, 'retry_interval=-1'),
    ({'retry_interval': True}, TypeError, 'retry_interval=True'),
    ({'compress': 'yes'}, TypeError, "compress='yes': expected True or False"),
    ({'delay': 1}, TypeError, 'delay=1: expected True or False'),
    ({'mode': 'r'}, ValueError, "mode='r': expected 'a' or 'w'"),
    ({'encoding': 8}, TypeError, 'encoding=8: expected a str or None'),
    ({'filename': 3}, TypeError, 'filename=3: expected str or os.PathLike'),
]


@pytest.mark.parametrize(('override', 'error', 'message'), BAD_ARGUMENTS, ids=lambda v: repr(v)[:30])
def test_arguments_are_checked_before_the_log_is_opened(
    tmp_path: Path, override: dict[str, object], error: type, message: str
) -> None:
    arguments: dict[str, object] = {'filename': tmp_path / 'x.log', 'maxBytes': 1024, 'backupCount': 2}
    arguments.update(override)
    with pytest.raises(error, match=re.escape(message)):
        RotatingFileHandler(**arguments)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == [], 'nothing was opened'


def test_nan_total_no_longer_deletes_every_rotated_log(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='max_total_bytes=nan'):
        RotatingFileHandler(tmp_path / 'x.log', maxBytes=10, backupCount=3, max_total_bytes=float('nan'))
    handler = RotatingFileHandler(tmp_path / 'y.log', maxBytes=1e3, backupCount=3, max_total_bytes=1e6)
    try:
        Log(handler).many(50, '%d %s', 'w' * 100)
        assert len(handler.rotated_files()) == 3, 'float byte counts work as the standard library takes them'
    finally:
        handler.close()


def test_quota_exceeded_is_a_full_disk_too(btrfs_quota: Path, handlers: list[logging.Handler]) -> None:
    handler = RotatingFileHandler(btrfs_quota / 'q.log', maxBytes=4 * MiB, backupCount=30, retry_interval=0)
    handlers.append(handler)
    assert diskguard.usage(btrfs_quota).avail > 120 * MiB, 'statvfs shows room for all 30 files'
    with pytest.warns(DiskSpaceWarning, match='oldest rotated log'):
        Log(handler).many(100_000, 'rec-%d-%s-END', 'e' * 1000)  # 100 MiB against a 64 MiB quota
    assert handler.dropped == 0 and handler.vacuumed
    assert complete_records(btrfs_quota / 'q.log')[-1] == 99_999

    for name in handler.rotated_files():
        os.remove(name)
    with pytest.raises(OSError) as refused:
        (btrfs_quota / 'not-ours').write_bytes(b'\0' * QUOTA_LIMIT)  # another writer takes the rest
    assert refused.value.errno == errno.EDQUOT
    with pytest.warns(DiskSpaceWarning, match=r'the disk is full \(\[Errno 122\] Disk quota exceeded'):
        Log(handler).many(5000, 'rec-%d-%s-END', 'f' * 1000)
    assert handler.dropped > 0
