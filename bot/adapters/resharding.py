"""``python -m bot reshard --shard-count N``: switch the answering shard processes, no downtime.

The steps (docs/scaling.md, "Changing the shard count"): start the new set of ``run`` processes
next to the old one, run this command, wait until each old process logs that it can be stopped
(its trainings finished there), stop the old set. See ``bot/core/shard_plan.py`` for how the two
sets never both answer an interaction, nor both leave it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from bot.config import Config
from bot.core.api import OpenTraining, ShardChange
from bot.errors import StorageError, UserError

WAIT_LIMIT_SECONDS = 10.0  # the switch takes effect a few seconds after it is written


def steps_text(old: int | None, new: int) -> str:
    """The operator's steps around this command."""
    old_flag = f"--shard-count {old}" if old is not None else "the old --shard-count"
    return "\n".join(
        (
            "Steps (docs/scaling.md, 'Changing the shard count'):",
            f"  1. start the new set next to the old one: python -m bot run --shard-ids I "
            f"--shard-count {new}, for each I in 0..{new - 1} (or fewer processes, each with "
            "several ids)",
            f"  2. python -m bot reshard --shard-count {new} (this command)",
            f"  3. wait until each process started with {old_flag} logs 'it can be stopped' "
            "(its trainings finished there and were kept)",
            "  4. stop those processes (SIGTERM); nothing to migrate",
        )
    )


def _training_line(job: OpenTraining) -> str:
    server = f", server {job.guild_id}" if job.guild_id is not None else ""
    owner = f", process {job.owner}" if job.owner else ""
    return f"  job #{job.job_id} {job.state} in channel {job.channel_id}{server}{owner}"


def change_text(change: ShardChange) -> str:
    plan = change.plan
    if change.recorded_first:
        head = f"No shard count was recorded yet: {plan.shard_count} is the active one now."
    else:
        at = time.strftime("%H:%M:%S UTC", time.gmtime(plan.switch_at))
        head = (
            f"Shard count {plan.shard_count} answers every interaction created from {at} (it "
            f"was {plan.previous_count}). Processes started with --shard-count "
            f"{plan.previous_count} answer none of them; the trainings running there finish "
            "there, once."
        )
    trainings = change.open_trainings
    lines = [head, f"Open trainings now: {len(trainings)}"]
    lines += [_training_line(job) for job in trainings]
    lines.append(steps_text(plan.previous_count, plan.shard_count))
    return "\n".join(lines)


async def _reshard(config: Config, shard_count: int, out: TextIO) -> None:
    from bot.app import open_app

    async with open_app(config, warm_workers=False) as app:
        change = await app.service.reshard(shard_count)
    out.write(change_text(change) + "\n")
    out.flush()
    if not change.recorded_first:
        # The store's clock decides; this machine's may differ a little: wait, bounded.
        await asyncio.sleep(min(WAIT_LIMIT_SECONDS, max(0.0, change.plan.switch_at - time.time())))
        out.write(f"Switched: the processes with --shard-count {shard_count} answer now.\n")


def reshard_command(config: Config, shard_count: int, out: TextIO) -> int:
    """Exit status: 0 switched, 1 refused (bad count, already active), 2 database error."""
    try:
        asyncio.run(_reshard(config, shard_count, out))
    except UserError as exc:
        sys.stderr.write(f"reshard: {exc.message}\n")
        return 1
    except StorageError as exc:
        sys.stderr.write(f"database error: {exc}\n")
        return 2
    return 0
