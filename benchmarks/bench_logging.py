"""Records per second through diskguard's RotatingFileHandler next to the standard library's.

Run: ``python benchmarks/bench_logging.py [DIR]``. Both handlers write the same records with the same
maxBytes/backupCount into DIR (default: a temporary directory), rotating several times; rounds are
interleaved and the medians compared. Target: ours at least 0.95x the standard library's rate.
"""

from __future__ import annotations

import logging
import logging.handlers
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from diskguard.logging import RotatingFileHandler

RECORDS = 50_000
ROUNDS = 9
MAX_BYTES = 1024 * 1024  # about 12 rotations per round
BACKUPS = 3


def rate(handler: logging.Handler) -> float:
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s %(message)s'))
    record = logging.LogRecord('train', logging.INFO, __file__, 1, 'step %d loss %.4f', (0, 0.0), None)
    start = time.perf_counter()
    for i in range(RECORDS):
        record.args = (i, 1.0 / (i + 1))
        handler.handle(record)
    elapsed = time.perf_counter() - start
    handler.close()
    return RECORDS / elapsed


def main() -> int:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix='diskguard-bench-'))
    rates: dict[str, list[float]] = {'stdlib RotatingFileHandler': [], 'diskguard RotatingFileHandler': []}
    try:
        for n in range(ROUNDS):
            for name, samples in rates.items():
                directory = base / f'{n}-{name.split()[0]}'
                directory.mkdir(parents=True)
                if name.startswith('stdlib'):
                    handler: logging.Handler = logging.handlers.RotatingFileHandler(
                        directory / 'train.log', maxBytes=MAX_BYTES, backupCount=BACKUPS
                    )
                else:
                    handler = RotatingFileHandler(
                        directory / 'train.log', maxBytes=MAX_BYTES, backupCount=BACKUPS
                    )
                samples.append(rate(handler))
                shutil.rmtree(directory)
    finally:
        if len(sys.argv) <= 1:
            shutil.rmtree(base, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    floor = medians['stdlib RotatingFileHandler']
    print(f'{RECORDS} records x {ROUNDS} interleaved rounds, maxBytes={MAX_BYTES}, backupCount={BACKUPS}')
    print(f'{"handler":<32} {"records/s":>11} {"vs stdlib":>10}')
    for name, value in medians.items():
        print(f'{name:<32} {value:>11.0f} {value / floor:>9.3f}x')
    print(f'target: >= 0.95x; measured {medians["diskguard RotatingFileHandler"] / floor:.3f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
