"""The hand-written stub matches the compiled module, and the package type-checks against it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_stub_matches_the_compiled_module() -> None:
    done = subprocess.run(
        [sys.executable, '-m', 'mypy.stubtest', 'diskguard._diskguard'],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_package_type_checks_strictly() -> None:
    done = subprocess.run(
        [
            sys.executable,
            '-m',
            'mypy',
            '--strict',
            str(ROOT / 'python' / 'diskguard'),
            str(ROOT / 'examples'),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
