"""A FUSE filesystem whose statfs takes DELAY seconds, like a hung network mount, in plain Python.

Run as root: ``python slow_fuse.py MOUNTPOINT DELAY [GETATTR_DELAY [announce]]``. It speaks the
/dev/fuse protocol itself (no libfuse), mounts, prints ``ready``, answers the kernel's INIT and
prints ``initialized`` (only then is the mount usable: a test waits for that line), and serves
until unmounted. It answers GETATTR of the root (after GETATTR_DELAY seconds, default 0) and STATFS
(after DELAY seconds, with fixed figures); everything else gets ENOSYS. With ``announce`` it prints
``getattr`` as each GETATTR arrives, so a test knows a caller is inside the slow request.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
import time

FUSE_GETATTR, FUSE_STATFS, FUSE_INIT = 3, 17, 26
NO_REPLY = {2, 36, 42}  # FORGET, INTERRUPT, BATCH_FORGET
IN_HEADER = struct.Struct('<IIQQIIIHH')
OUT_HEADER = struct.Struct('<IiQ')
BLOCKS, BFREE, BAVAIL, FILES, FFREE, BSIZE = 1000, 600, 500, 100, 40, 4096


def reply(fd: int, unique: int, payload: bytes = b'', error: int = 0) -> None:
    os.write(fd, OUT_HEADER.pack(OUT_HEADER.size + len(payload), -error, unique) + payload)


def init_reply(major: int, minor: int) -> bytes:
    # fuse_init_out: major, minor, max_readahead, flags, max_background, congestion_threshold,
    # max_write, time_gran, max_pages, map_alignment, flags2, then unused words up to 64 bytes.
    body = struct.pack('<IIIIHHIIHHI', 7, min(minor, 31), 0, 0, 0, 0, 4096, 1, 1, 0, 0)
    return body.ljust(64, b'\0')


def root_attr() -> bytes:
    now = int(time.time())
    attr = struct.pack('<QQQQQQIIIIIIIIII', 1, 0, 0, now, now, now, 0, 0, 0, 0o40755, 2, 0, 0, 0, 4096, 0)
    return struct.pack('<QII', 0, 0, 0) + attr  # attr_valid 0: the kernel asks every time


def statfs_reply() -> bytes:
    return struct.pack('<QQQQQIIII', BLOCKS, BFREE, BAVAIL, FILES, FFREE, BSIZE, 255, BSIZE, 0).ljust(
        80, b'\0'
    )


def main() -> int:
    mount_point, delay = sys.argv[1], float(sys.argv[2])
    getattr_delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    announce = len(sys.argv) > 4 and sys.argv[4] == 'announce'
    fd = os.open('/dev/fuse', os.O_RDWR)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f'fd={fd},rootmode=40000,user_id=0,group_id=0'.encode()
    if libc.mount(b'slowfuse', mount_point.encode(), b'fuse.slowfuse', 0, options) != 0:
        print(f'mount failed: {os.strerror(ctypes.get_errno())}', flush=True)
        return 1
    print('ready', flush=True)
    while True:
        try:
            request = os.read(fd, 1 << 20)
        except OSError as err:
            if err.errno == errno.ENODEV:  # unmounted
                return 0
            if err.errno == errno.EINTR:
                continue
            raise
        _length, opcode, unique, _node, *_ = IN_HEADER.unpack_from(request)
        if opcode in NO_REPLY:
            continue
        if opcode == FUSE_INIT:
            major, minor = struct.unpack_from('<II', request, IN_HEADER.size)
            reply(fd, unique, init_reply(major, minor))
            print('initialized', flush=True)
        elif opcode == FUSE_GETATTR:
            if announce:
                print('getattr', flush=True)
            time.sleep(getattr_delay)
            reply(fd, unique, root_attr())
        elif opcode == FUSE_STATFS:
            time.sleep(delay)
            reply(fd, unique, statfs_reply())
        else:
            reply(fd, unique, error=errno.ENOSYS)


if __name__ == '__main__':
    sys.exit(main())
