"""Which shard count answers: resharding without downtime.

Discord routes a guild's events to every connected session whose ``[shard_id, num_shards]`` holds
it, ``(guild_id >> 22) % num_shards``, whatever the count. To change the count without downtime
the operator starts the new set (``--shard-count 3``) next to the old one (``--shard-count 2``):
from then on each interaction reaches one process of each set, and exactly one must answer it.

The store keeps the cluster's **shard plan** (one row): the active shard count, the count before
it and ``switch_at``, when the switch takes effect (the store's clock, :data:`LEAD_SECONDS` after
``python -m bot reshard`` wrote it). An interaction belongs to the count active when Discord
created it (its snowflake's time, the same number in every process): the previous count before
``switch_at``, the new one from then on. A process answers an interaction only if its own
``--shard-count`` is that count; the other set's process ignores it and defers nothing.

Why the two sets never disagree: a plan read at store time ``S`` decides the interactions created
before ``S + LEAD_SECONDS - MARGIN_SECONDS`` (:meth:`ShardGate.answers`), and a change written
after that read takes effect at ``S + LEAD_SECONDS`` at the earliest; a later interaction waits
for a fresh read. So Discord's clock and the store's must agree within ``LEAD_SECONDS -
MARGIN_SECONDS`` (2 s; NTP keeps them within milliseconds). Each process reads the plan at least
every :data:`REFRESH_SECONDS` (one small query).

A process whose count is no longer active keeps its gateway sessions and finishes the trainings
it runs (they commit there, once); it logs when none is left and it can be stopped. A process
without a shard count (``discord.shard_count`` unset) is not part of a sharded set: it answers
everything, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from bot.errors import UserError

logger = logging.getLogger(__name__)

LEAD_SECONDS = 3.0  # a change takes effect this long after it is written
MARGIN_SECONDS = 1.0  # of LEAD_SECONDS, kept for clocks and a slow commit
REFRESH_SECONDS = 0.5  # the promise: another process's change is seen within 1 s
OUTAGE_WARNING_SECONDS = 60.0


@dataclass(frozen=True)
class ShardPlan:
    """The cluster's active shard count since ``switch_at``; ``previous_count`` before it."""

    shard_count: int
    previous_count: int | None
    switch_at: float  # seconds since the epoch, the store's clock
    changed_at: str  # ISO 8601 UTC, for people

    def count_at(self, created_at: float) -> int:
        """The shard count whose processes answer an interaction created at ``created_at``."""
        if created_at >= self.switch_at or self.previous_count is None:
            return self.shard_count
        return self.previous_count


@dataclass(frozen=True)
class PlanRead:
    """The plan (None before any sharded process recorded one) and the store's time of the
    read (no later than the read's snapshot)."""

    plan: ShardPlan | None
    read_at: float


@dataclass(frozen=True)
class OpenTraining:
    """A queued or running job, for the operator waiting for the old set to finish."""

    job_id: int
    channel_id: int
    guild_id: int | None
    state: str
    owner: str | None  # bot/owner.py's id of the process running it


class ShardPlans(Protocol):
    """The store's part of resharding (both backends; migration 10)."""

    owner: str  # this process, as jobs name their owner (bot/owner.py)

    async def shard_plan(self) -> PlanRead:
        """The plan and the store's time, read before the plan (see ``PlanRead``)."""
        ...

    async def record_shard_count(self, shard_count: int) -> ShardPlan:
        """Record ``shard_count`` as active if no plan exists yet; return the plan."""
        ...

    async def switch_shard_count(
        self, expected: int, shard_count: int, lead_seconds: float
    ) -> ShardPlan | None:
        """If ``expected`` is still active, make ``shard_count`` active ``lead_seconds`` from
        now (the store's clock, taken in the writing transaction); None if it changed."""
        ...

    async def open_trainings(self) -> list[OpenTraining]:
        """Every queued or running job, oldest first."""
        ...


@dataclass(frozen=True)
class ShardChange:
    """What ``reshard`` did: the plan now, and the trainings open when it was written."""

    plan: ShardPlan
    recorded_first: bool  # no plan existed: the count is active at once
    open_trainings: list[OpenTraining]


async def reshard(store: ShardPlans, shard_count: int) -> ShardChange:
    """Make ``shard_count`` the active shard count (``python -m bot reshard``).

    Refuses (``UserError``) a count below 1, the count already active, and a change while the
    previous one has not taken effect yet."""
    if shard_count < 1:
        raise UserError("The shard count must be 1 or more (got {count}).", count=shard_count)
    current = await store.shard_plan()
    if current.plan is None:
        plan = await store.record_shard_count(shard_count)
        if plan.shard_count == shard_count:
            return ShardChange(plan, True, await store.open_trainings())
        current = await store.shard_plan()  # a process recorded its count meanwhile
    assert current.plan is not None
    if current.read_at < current.plan.switch_at:
        raise UserError(
            "The switch to {count} shards is still taking effect; try again in {seconds} seconds.",
            count=current.plan.shard_count,
            seconds=f"{LEAD_SECONDS:.0f}",
        )
    if current.plan.shard_count == shard_count:
        raise UserError(
            "{count} is already the active shard count: nothing to change. "
            "Start the new set with another --shard-count first.",
            count=shard_count,
        )
    switched = await store.switch_shard_count(current.plan.shard_count, shard_count, LEAD_SECONDS)
    if switched is None:
        raise UserError("The shard count was changed by someone else meanwhile; look again.")
    return ShardChange(switched, False, await store.open_trainings())


class ShardGate:
    """Whether this process answers an interaction (see the module doc).

    Until ``start`` names a shard count (or with None: not sharded) it answers everything.
    """

    def __init__(self, store: ShardPlans) -> None:
        self.store = store
        self.shard_count: int | None = None
        self._read: PlanRead | None = None
        self._refreshing: asyncio.Task[PlanRead | None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._warned_at = 0.0
        self._said_idle = False

    @property
    def plan(self) -> ShardPlan | None:
        return None if self._read is None else self._read.plan

    async def start(self, shard_count: int | None) -> None:
        """Record this process's count if none is, read the plan, and watch it from now on."""
        self.shard_count = shard_count
        if shard_count is None:
            return
        try:
            await self.store.record_shard_count(shard_count)
        except Exception as exc:  # a read-only store: read what is there
            logger.warning("could not record the shard count %d: %s", self.shard_count, exc)
        await self._refresh()
        plan = self.plan
        if plan is not None and plan.shard_count != self.shard_count:
            logger.warning(
                "this process runs %d shards but %d is the active shard count: it answers no "
                "interactions until `python -m bot reshard --shard-count %d`",
                self.shard_count,
                plan.shard_count,
                self.shard_count,
            )
        self._watch = asyncio.get_running_loop().create_task(self._watch_plan(), name="shard-plan")

    async def close(self) -> None:
        for task in (self._watch, self._refreshing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def answers(self, created_at: float) -> bool:
        """Whether this process answers an interaction Discord created at ``created_at``."""
        if self.shard_count is None:
            return True
        read = self._read
        if read is None or not self._decides(read, created_at):
            fresh = await self._refresh()
            # Only a read that just succeeded says the clocks disagree (not a store outage).
            if fresh is not None and not self._decides(fresh, created_at):
                logger.warning(
                    "an interaction is %.1f s ahead of the store's clock: keep the clocks in sync",
                    created_at - fresh.read_at,
                )
            read = fresh or read
        if read is None or read.plan is None:
            return True  # nothing recorded and unreadable: serve, as an unsharded process does
        return read.plan.count_at(created_at) == self.shard_count

    @staticmethod
    def _decides(read: PlanRead, created_at: float) -> bool:
        return created_at < read.read_at + LEAD_SECONDS - MARGIN_SECONDS

    async def _refresh(self) -> PlanRead | None:
        """One read of the plan, shared by every caller waiting meanwhile; None if it failed."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._read_plan())
        return await asyncio.shield(self._refreshing)

    async def _read_plan(self) -> PlanRead | None:
        try:
            read = await self.store.shard_plan()
        except Exception as exc:  # decide with the last plan; a switch needs the store too
            now = time.monotonic()
            if self._failing_since is None or now - self._warned_at >= OUTAGE_WARNING_SECONDS:
                self._failing_since = self._failing_since or now
                self._warned_at = now
                logger.warning("could not read the shard plan from the store: %s", exc)
            return None
        if self._failing_since is not None:
            logger.info("the shard plan can be read from the store again")
            self._failing_since = None
        self._note_change(read)
        self._read = read
        return read

    def _note_change(self, read: PlanRead) -> None:
        old, new = self.plan, read.plan
        if new is None or (old is not None and old == new) or self._read is None:
            return
        if new.shard_count == self.shard_count:
            logger.info(
                "shard count %d is active from %s: this process answers interactions",
                new.shard_count,
                _clock(new.switch_at),
            )
        else:
            logger.info(
                "shard count %d is active from %s: this process (%d shards) answers no "
                "interactions created from then on; the trainings running here finish here",
                new.shard_count,
                _clock(new.switch_at),
                self.shard_count,
            )
        self._said_idle = False

    async def _watch_plan(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            read = await self._refresh()
            plan = None if read is None else read.plan
            # a process of the set that answered until a switch (not one still waiting for its own)
            retired = (
                read is not None
                and plan is not None
                and plan.previous_count == self.shard_count
                and read.read_at >= plan.switch_at
            )
            if retired and not self._said_idle and not await self._runs_trainings():
                self._said_idle = True
                logger.info(
                    "this process (%d shards) answers nothing and runs no training: it can be "
                    "stopped",
                    self.shard_count,
                )

    async def _runs_trainings(self) -> bool:
        try:
            trainings = await self.store.open_trainings()
        except Exception:  # the outage is logged by the plan's reads; look again next round
            return True
        return any(job.owner == self.store.owner for job in trainings)


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(at))
