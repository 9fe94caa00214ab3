"""Files that are either written completely or not at all: write a temporary file, fsync, rename.

A crash while writing leaves the previous file intact: the rename is atomic on every operating system
the course runs on, and the folder is fsynced so that the rename itself survives a power cut.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file inside ``folder`` durable (POSIX; Windows cannot open folders)."""
    if os.name == "nt":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_file(path: Path) -> None:
    """Flush a file that another library wrote to the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def atomic_write(path: str | Path, write: Callable[[IO], None], text: bool = False) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w" if text else "wb", **({"encoding": "utf-8"} if text else {})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_dir(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
