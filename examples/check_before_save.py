"""Check the disk before writing a checkpoint, the way a training loop should.

Run: ``python examples/check_before_save.py [CHECKPOINT_DIR]`` (default: a fresh temporary directory).
The checkpoint directory may not exist yet: diskguard answers for its nearest existing ancestor.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import diskguard


def save_if_room(checkpoint_dir: Path, payload: bytes, keep_free: str = '64MiB') -> bool:
    """Writes `payload` only if it fits with `keep_free` to spare; returns whether it saved."""
    u = diskguard.usage(checkpoint_dir)
    needed = len(payload) + diskguard.parse_size(keep_free)
    if u.avail < needed:
        print(
            f'not saving: {diskguard.format_size(u.avail)} available, {diskguard.format_size(needed)} needed'
        )
        return False
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (checkpoint_dir / 'step-100.ckpt').write_bytes(payload)
    print(f'saved {diskguard.format_size(len(payload))} to {checkpoint_dir}')
    return True


def main() -> int:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / 'run-1' / 'checkpoints'
    u = diskguard.usage(base)
    where = 'itself' if u.path_exists else f'its ancestor {u.queried_path}'
    print(f'{base}: measured {where} on {u.mount_point} ({u.fs_type})')
    print(
        f'available to this job: {diskguard.format_size(u.avail)} ({u.percent_used:.1f}% used, as df shows)'
    )
    result = diskguard.check(base, warn=0.85, critical=0.95, min_free='1GiB')
    print(f'status: {result}')
    if result.level == diskguard.Level.CRITICAL:
        return 2
    save_if_room(base, b'\0' * 1024 * 1024)
    return 0


if __name__ == '__main__':
    sys.exit(main())
