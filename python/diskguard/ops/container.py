"""Containers: report host filesystems by their host mount points when the host's /proc is mounted.

With ``-v /proc:/host_proc:ro`` and ``--proc-root /host_proc``, pid 1's mount table there is the
host's. A path's own mount (from ``/proc/self``) and a host mount of the same device whose root is a
prefix of ours give the host path: ``host mount point + (our root - its root) + path in our mount``.
Without it, a container sees only its own view, and the commands say so.
"""

from __future__ import annotations

import os

from .. import Mount, mounts, usage


def in_container() -> bool:
    """Docker and Podman leave a marker file; an overlay root is the other common sign."""
    if os.path.exists('/.dockerenv') or os.path.exists('/run/.containerenv'):
        return True
    try:
        return usage('/').is_overlay
    except OSError:
        return False


def _under(root: str, inner: str) -> str | None:
    """``inner`` relative to ``root`` when it lies inside it, else None."""
    if root == '/':
        return inner.lstrip('/')
    if inner == root or inner.startswith(root.rstrip('/') + '/'):
        return inner[len(root) :].lstrip('/')
    return None


def host_path(path: str, host_table: list[Mount]) -> str | None:
    """Where ``path`` lives as the host sees it, or None when no host mount shows its device."""
    u = usage(path)
    own = u.mount
    if own is None or own.mount_point is None:
        return None
    inside = _under(own.mount_point, os.path.realpath(u.queried_path))
    if inside is None:
        return None
    best: tuple[int, str] | None = None
    for m in host_table:
        if (m.major, m.minor) != (own.major, own.minor):
            continue
        rest = _under(m.root, own.root)
        if rest is None:
            continue
        candidate = os.path.normpath(os.path.join(m.mount_point, rest, inside))
        # Prefer the mount whose root is deepest (closest to ours), then the shortest host path.
        rank = (len(m.root), candidate)
        if best is None or rank[0] > best[0] or (rank[0] == best[0] and len(candidate) < len(best[1])):
            best = (rank[0], candidate)
    return None if best is None else best[1]


def host_table(proc_root: str) -> list[Mount]:
    """pid 1's mount table under ``proc_root`` (the host's init when the host's /proc is mounted)."""
    if not os.path.isdir(proc_root):
        raise ValueError(f"--proc-root={proc_root!r}: not a directory (mount the host's /proc there)")
    return mounts(proc_root)


#: What the commands say when they run in a container without the host's /proc.
CONTAINER_NOTE = (
    "in a container without the host's /proc: these are the container's mounts only; "
    'mount it (-v /proc:/host_proc:ro) and pass --proc-root /host_proc to see host mount points'
)
