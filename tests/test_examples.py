"""Every example runs, so the examples never rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / 'examples'


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, timeout=60)


def test_check_before_save_saves_when_there_is_room(tmp_path: Path) -> None:
    target = tmp_path / 'run' / 'ckpts'
    done = run(str(EXAMPLES / 'check_before_save.py'), str(target))
    assert done.returncode == 0, done.stderr
    assert f'{target}: measured its ancestor {tmp_path}' in done.stdout
    assert (target / 'step-100.ckpt').stat().st_size == 1024 * 1024


def test_check_before_save_refuses_on_a_full_disk(tmpfs: Path) -> None:
    (tmpfs / 'filler').write_bytes(b'\0' * (15 * 1024 * 1024))
    done = run(str(EXAMPLES / 'check_before_save.py'), str(tmpfs / 'ckpts'))
    assert done.returncode == 2, done.stdout + done.stderr
    assert 'status: CRITICAL' in done.stdout
    assert not (tmpfs / 'ckpts').exists(), 'nothing written to a critical disk'


def test_budget_logging_sizes_from_the_disk(tmpfs: Path) -> None:
    done = run(str(EXAMPLES / 'budget_logging.py'), str(tmpfs / 'logs'))
    assert done.returncode == 0, done.stderr
    assert (
        'log budget: 1677721 bytes (bound by max_use_fraction=0.1 of the 16.0 MiB filesystem)' in done.stdout
    )
    assert 'dropped 0 records' in done.stdout
    assert (tmpfs / 'logs' / 'train.log').read_text().splitlines()[-1].endswith('step 999 loss 0.0010')
