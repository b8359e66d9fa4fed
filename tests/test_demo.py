"""`diskguard demo`, as a new user runs it: the guard warns, applies retention, makes room, forecasts,
stops with room kept for a final checkpoint, and that checkpoint loads."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

# CI runs these on the interpreter that has torch (the test extra) and deselects them elsewhere.
pytestmark = pytest.mark.torch
torch = pytest.importorskip('torch', reason='the demo needs torch: pip install -e .[demo]')


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, '-m', 'diskguard', 'demo', *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_demo_shows_every_rung_of_the_ladder_and_ends_with_a_checkpoint_that_loads(
    tmp_path: Path,
) -> None:
    done = demo('--dir', str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert 'guard: disk level ok -> warn' in out
    assert '(deleted 1 by retention)' in out, 'retention deleted what the rules do not keep'
    assert 'to make room)' in out, 'then it made room by deleting kept ones'
    # The degradation is said once, with the way to stop instead; deletions are not warnings.
    assert out.count('can no longer keep what its rules ask') == 1 and "on_full='stop'" in out
    assert 'although kept as' not in out
    lines = out.splitlines()
    assert len(lines) <= 45, 'the story fits a screen'
    assert str(tmp_path) not in '\n'.join(lines[1:]).rsplit('resume from', 1)[0], 'names relative to the run'
    assert 'forecast keeping every checkpoint, with the log growing: full in ~' in out
    assert 'the guard stops the run' in out and 'final checkpoint' in out
    resumed = out.rsplit('resume from ', 1)[1].split(':', 1)[0]
    state = torch.load(resumed, weights_only=True)
    assert f'epoch {state["epoch"]},' in out and Path(resumed).parent == tmp_path / 'run'
    held = sum(p.stat().st_blocks * 512 for p in (tmp_path / 'run').iterdir())
    budget_line = next(line for line in out.splitlines() if 'a budget of' in line)
    assert held <= 11.3 * 1024 * 1024, budget_line
    assert not [n for n in os.listdir(tmp_path / 'run') if n.startswith('.diskguard-')]


def test_the_tmpfs_demo_shows_the_crash_it_prevents() -> None:
    if os.geteuid() != 0:
        done = demo('--tmpfs')
        assert done.returncode == 2 and 'run it as root' in done.stdout
        return
    done = demo('--tmpfs')
    assert done.returncode == 0, done.stdout + done.stderr
    unguarded, guarded = done.stdout.split('guarded: the same loop', 1)
    assert 'torch.save crashed: RuntimeError' in unguarded and 'is left truncated' in unguarded
    assert 'resume from' in guarded and 'loads with weights_only=True' in guarded
    mounted = Path('/proc/self/mounts').read_text()
    assert 'diskguard-demo-' not in mounted, 'both tmpfs unmounted'


def test_the_demo_needs_no_root() -> None:
    from conftest import as_user
    from diskguard import demo as demo_module

    lines: list[str] = []
    if os.geteuid() == 0:
        # torch imports parts of itself lazily, from a tree only root may read on this machine:
        # load them before dropping privileges.
        warm = demo_module._Model()
        buffer = io.BytesIO()
        torch.save(warm.state(0, warm.epoch(1)), buffer)
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
        with as_user():
            code = demo_module.run(None, epochs=30, budget=None, tmpfs=False, out=lines.append)
    else:
        code = demo_module.run(None, epochs=30, budget=None, tmpfs=False, out=lines.append)
    text = '\n'.join(lines)
    assert code == 0, text
    assert 'the guard stops the run' in text and 'loads with weights_only=True' in text


def test_bad_demo_arguments_are_one_line() -> None:
    for args, words in [(('--epochs', '0'), 'expected at least 1'), (('--budget', 'lots'), 'budget')]:
        done = demo(*args)
        assert done.returncode != 0 and 'Traceback' not in done.stderr, done.stderr
        assert words in done.stdout + done.stderr
