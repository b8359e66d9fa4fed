"""Size a training log from free space and keep logging through a full disk.

Run: ``python examples/budget_logging.py [LOG_DIR]`` (default: a fresh temporary directory).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from diskguard.logging import RotatingFileHandler


def main() -> int:
    log_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler.from_budget(log_dir / 'train.log', compress=True)
    assert handler.budget is not None
    print(f'log budget: {handler.budget.total_bytes} bytes ({handler.budget.explanation})')
    print(f'rotating at {handler.maxBytes} bytes, keeping up to {handler.backupCount} gzipped files')
    log = logging.getLogger('train')
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    for step in range(1000):
        log.info('step %d loss %.4f', step, 1.0 / (step + 1))
    handler.close()
    print(f'wrote {handler.footprint()} bytes of logs, dropped {handler.dropped} records')
    return 0


if __name__ == '__main__':
    sys.exit(main())
