"""Job owners kept alive across processes: an advisory lock and a lease, both renewed.

A store's owner (``bot.owner``) is alive for the other processes while either

- a session holds its advisory lock (the store's own connection; a killed process's connection
  drops and PostgreSQL releases the lock), or
- its lease in ``job_owners`` runs: renewed every third of ``lease_seconds`` by a background
  task, which also reconnects and takes the lock again after a drop. A server restart counts
  as a renewal (``pg_postmaster_start_time()``): nobody could renew while it was down.

So a database restart or a dropped connection, which release every lock at once, interrupts no
live job, and the owners come back within a renewal. A lease that runs without a lock is ended
early only where the owner's own host proves its process gone (``bot.owner.owner_gone_here``):
a bot killed and restarted on the same host interrupts its jobs at once; a process killed on
another host is judged gone when its lease has run out. A store closed cleanly deletes its
lease, which makes its jobs (if any were left open) orphans at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Container, Sequence
from typing import Any

from bot.owner import owner_gone_here

logger = logging.getLogger(__name__)

# Advisory lock keys: (namespace, key). The namespace spells "fabu"; key 0 guards migrations.
LOCK_NAMESPACE = 0x66616275
# A lease runs until lease_until, or for its length after the server's (re)start if that is later.
_LEASED = (
    "SELECT owner FROM job_owners WHERE owner = ANY($1::text[]) "
    "AND greatest(lease_until, pg_postmaster_start_time() + (lease_until - renewed_at)) > now()"
)
_RENEW = (
    "INSERT INTO job_owners (owner, renewed_at, lease_until) "
    "VALUES ($1, now(), now() + make_interval(secs => $2)) ON CONFLICT (owner) DO UPDATE "
    "SET renewed_at = excluded.renewed_at, lease_until = excluded.lease_until"
)
# Leases of processes gone for a day: nobody will ask for them again.
_FORGET_OLD = "DELETE FROM job_owners WHERE lease_until < now() - interval '1 day'"


def owner_lock_key(owner: str) -> int:
    """The signed 32-bit advisory-lock key of a job owner (never 0: that is the migrations')."""
    digest = int.from_bytes(hashlib.sha256(owner.encode()).digest()[:4], "big", signed=True)
    return digest or 1


async def live_owners(
    db: Any, owners: Sequence[str | None], open_owners: Container[str]
) -> set[str]:
    """Those of ``owners`` that are alive (see the module): locked, or leased and not known gone.

    ``open_owners`` are this process's open stores' owners."""
    named = sorted({o for o in owners if o})
    if not named:
        return set()
    held = {
        int(row["objid"])
        for row in await db.fetch(
            "SELECT objid::bigint AS objid FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted AND classid = $1::bigint::oid AND objsubid = 2 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            LOCK_NAMESPACE,
        )
    }
    # pg_locks shows a signed int4 key as its unsigned 32-bit pattern
    locked = {o for o in named if (owner_lock_key(o) & 0xFFFFFFFF) in held}
    leased = {row["owner"] for row in await db.fetch(_LEASED, named)}
    return locked | {o for o in leased - locked if not owner_gone_here(o, open_owners)}


class OwnerLease:
    """One store's owner, kept alive: its lock on a connection of its own and its lease."""

    def __init__(self, owner: str, connect: Any, *, lease_seconds: float, timeout: float) -> None:
        self.owner = owner
        self._connect = connect  # () -> a new asyncpg connection
        self.lease_seconds = lease_seconds
        self.timeout = timeout
        self._connection: Any = None
        self._locked = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """The first renewal (its errors are the caller's), then renewals in the background."""
        await self.renew()
        await self._connection.execute(_FORGET_OLD, timeout=self.timeout)
        self._task = asyncio.create_task(self._renew_forever(), name=f"lease {self.owner}")

    async def renew(self) -> None:
        """Reconnect if the connection dropped, hold the lock, extend the lease."""
        if self._connection is None or self._connection.is_closed():
            self._connection, self._locked = await self._connect(), False
        if not self._locked:
            # try: a session the server has not yet seen drop may still hold it
            self._locked = bool(
                await self._connection.fetchval(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    LOCK_NAMESPACE,
                    owner_lock_key(self.owner),
                    timeout=self.timeout,
                )
            )
        await self._connection.execute(_RENEW, self.owner, self.lease_seconds, timeout=self.timeout)

    async def _renew_forever(self) -> None:
        failing = False
        while True:
            try:
                await self.renew()
            except Exception as exc:  # the database is away: retry soon, the lease still runs
                if not failing:
                    logger.warning("cannot renew the job owner's lease (retrying): %s", exc)
                failing = True
                self._drop()
                await asyncio.sleep(min(1.0, self.lease_seconds / 10))
                continue
            if failing:
                logger.info("job owner's lease renewed again")
            failing = False
            await asyncio.sleep(self.lease_seconds / 3)

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
        self._connection, self._locked = None, False

    async def close(self) -> None:
        """Stop renewing, delete the lease (the owner is gone now) and release the lock."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            await connection.execute(
                "DELETE FROM job_owners WHERE owner = $1", self.owner, timeout=self.timeout
            )
            await connection.close(timeout=self.timeout)
        except Exception:
            connection.terminate()  # its lease runs out by itself
