"""Which process owns an open training job, and whether that process is still there.

Every job row records its owner: ``host:boot_id:pid:start:token``. ``boot_id`` is Linux's
``/proc/sys/kernel/random/boot_id`` and ``start`` the process's start time in clock ticks since
boot (``/proc/<pid>/stat`` field 22), so a process id reused by another process, or after a
reboot, never passes for the owner. ``token`` names one open ``StoryStore`` of that process.

On start-up the service interrupts only the open jobs whose owner is gone (see
:func:`owner_alive`): a job the live bot is running survives an offline ``python -m bot status``
or ``export`` on the same database. Without ``/proc`` (not Linux) only the process id is checked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Container
from pathlib import Path


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    # The command name (field 2) may hold spaces or parentheses: count from the last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def new_owner() -> str:
    """A fresh owner string for this process (a new token each call)."""
    pid = os.getpid()
    host = socket.gethostname().replace(":", "_")
    return f"{host}:{_boot_id()}:{pid}:{_start_ticks(pid)}:{secrets.token_hex(4)}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return False
    return True


def owner_alive(owner: str | None, open_owners: Container[str] = ()) -> bool:
    """Whether the job owner ``owner`` may still be running its job.

    ``open_owners`` are this process's own open owners: a job of this process whose store was
    closed without finishing it is orphaned. A job without an owner (written before owners were
    recorded) or of another machine counts as gone, as every open job did before.
    """
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) != 5:
        return False
    host, boot_id, pid_text, start, _token = parts
    if host != socket.gethostname().replace(":", "_") or boot_id != _boot_id():
        return False
    pid = 0
    with contextlib.suppress(ValueError):
        pid = int(pid_text)
    if pid <= 0:
        return False
    if pid == os.getpid():
        return start == _start_ticks(pid) and owner in open_owners
    if not _pid_exists(pid):
        return False
    return start == _start_ticks(pid)


def owner_gone_here(owner: str | None, open_owners: Container[str] = ()) -> bool:
    """Whether this machine knows that ``owner``'s process is gone: it ran under this host name
    and its boot, its process or (for this process) its store is no more.

    An owner of another host is never known gone here: only its own host could tell.
    """
    if not owner or len(owner.split(":")) != 5:
        return False
    if owner.split(":", 1)[0] != socket.gethostname().replace(":", "_"):
        return False
    return not owner_alive(owner, open_owners)
