"""The type aliases the package and its stub share (one definition of each)."""

from __future__ import annotations

import os
from typing import TypeAlias

__all__ = ['Size', 'StrPath']

#: A path as the ``os`` module takes it.
StrPath: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]
#: A byte count: an int, a whole float, or a string such as ``'20GiB'``.
Size: TypeAlias = int | float | str
