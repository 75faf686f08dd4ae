"""Files that hold personal data or keys are this user's alone: `make_private` takes group and
other permissions off one that has them (an older gateway created its database 0644, a folder
made by hand may be 0755), or says why it cannot."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

__all__ = ["make_private"]

log = structlog.get_logger("gateway.files")


def make_private(path: Path, *, event: str, hint: str) -> None:
    """chmod go-rwx `path` when others may use it and this user owns it; else (or when chmod
    is impossible, as on a read-only mount) log `event` as a warning with `hint`, instead of
    failing. A path that does not exist is left alone. Raises nothing."""
    try:
        info = path.stat()
    except OSError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return
    problem = "owned by another user"
    if info.st_uid == os.geteuid():
        try:
            path.chmod(mode & 0o700)
            return
        except OSError as exc:
            problem = f"chmod failed: {exc.strerror}"
    log.warning(event, path=str(path), mode=f"{mode:04o}", problem=problem, hint=hint)
