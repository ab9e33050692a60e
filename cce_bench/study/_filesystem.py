"""Which filesystem a path is on: SQLite in WAL mode must not live on a network filesystem.

WAL keeps its index in shared memory next to the database, which every process must map from
the same host; NFS, SMB, Lustre and the like do not give that (SQLite's documentation, "WAL
mode ... does not work over a network filesystem"), and their locks are unreliable too. A
study's SQLite file on such a mount can be corrupted silently, so it is refused up front.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Linux's mount table: device, mount point, type, options, one mount per line.
MOUNTS = Path("/proc/mounts")

#: Filesystem types whose locking or shared memory SQLite's WAL mode cannot rely on.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "glusterfs",
     "fuse.glusterfs", "ceph", "fuse.ceph", "fuse.sshfs", "9p", "afs", "ocfs2", "fuse.s3fs",
     "fuse.gcsfuse", "fuse.juicefs", "wekafs", "panfs"}
)  # fmt: skip


def filesystem_type(path: Path) -> str | None:
    """The type of the mount ``path`` (or its nearest existing parent) lives on; None when the
    mount table cannot be read (not Linux)."""
    try:
        lines = MOUNTS.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    target = Path(os.path.realpath(path))
    best, kind = -1, None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if (target == point or point in target.parents) and len(point.parts) > best:
            best, kind = len(point.parts), fields[2]
    return kind


def network_filesystem(path: Path) -> str | None:
    """The network filesystem type ``path`` is on (``nfs4``), or None for a local one."""
    kind = filesystem_type(path)
    return kind if kind in NETWORK_FILESYSTEMS else None
