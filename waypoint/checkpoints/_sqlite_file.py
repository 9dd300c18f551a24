"""Whether the database file a SQLiteStore writes to is still the one on disk.

    watch = FileWatch.of(Path("runs.db"))   # after the connection opened it
    watch.problem()                          # None, or "deleted ..." / "replaced ..."

SQLite keeps writing to a database file that was deleted, or whose folder was
removed, while it was open: every commit "succeeds" into an inode nothing links
to any more, and all of it is gone when the connection closes. So the store
checks after each group commit (one `stat`, about a microsecond, against a
commit's 20 to 200).

A folder moved or renamed as a whole is harmless (the WAL moves with the
database), so the check does not look the path up from the root: it holds the
folder open and looks the file's name up in that folder, wherever it now is.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FileWatch"]


class FileWatch:
    """The database's folder (held open), its name in it, and the identity of the file opened."""

    def __init__(self, folder_fd: int, name: str, identity: tuple[int, int]) -> None:
        self.folder_fd, self.name, self.identity = folder_fd, name, identity

    @classmethod
    def of(cls, path: Path) -> FileWatch | None:
        """A watch on `path`, or None where it cannot be watched (no file on disk, no dir_fd)."""
        if os.stat not in os.supports_dir_fd:
            return None
        try:
            folder_fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return None
        try:
            found = os.stat(path.name, dir_fd=folder_fd)
        except OSError:  # ":memory:", "": no file to watch
            os.close(folder_fd)
            return None
        return cls(folder_fd, path.name, (found.st_dev, found.st_ino))

    def problem(self) -> str | None:
        """None while the file opened is still there under its name; else what became of it."""
        try:
            found = os.stat(self.name, dir_fd=self.folder_fd)
        except FileNotFoundError:
            return "deleted, or its folder removed,"
        except OSError:
            return None  # cannot tell (permissions, I/O): the commit's own outcome stands
        if (found.st_dev, found.st_ino) != self.identity:
            return "replaced by another file"
        return None

    def close(self) -> None:
        if self.folder_fd >= 0:
            os.close(self.folder_fd)
            self.folder_fd = -1
