"""A victim process for crash tests: commits new model versions through the real StoryStore.

    python -m tests.reliability.commit_loop DB CHANNEL_ID WORDS

Each round stores a story and a job, then calls ``StoryStore.activate_model`` (the transaction
the service runs when a training finishes) with a ~1 MB model blob whose vocabulary carries the
marker ``version<N>`` and keeps the last 3 versions; after the commit returns it prints
``committed N SHA256 COMMIT_SECONDS ROUND_SECONDS``. The test kills this process with
SIGKILL at random moments, so most kills land inside a commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from dataclasses import replace
from pathlib import Path

from bot.core.store import NewModel, NewStory
from bot.store.sqlite import SqliteStoryStore as StoryStore
from model import Vocabulary, to_bytes
from tests.reliability.conftest import synthetic_model

KEEP = 3


async def main(db: Path, channel_id: int, words: int) -> None:
    store = await StoryStore.open(db)
    base = synthetic_model([f"w{i}" for i in range(words + 1)], units=32)
    print("ready", flush=True)
    while True:
        started = time.perf_counter()
        current = await store.list_models(channel_id)
        version = 1 + max((m.version for m in current), default=0)
        vocabulary = [f"version{version}", *(f"w{i}" for i in range(words))]
        blob = to_bytes(replace(base, vocabulary=Vocabulary(tuple(vocabulary))))
        text = " ".join(vocabulary[:50])
        job = await store.add_story_and_job(
            channel_id=channel_id,
            guild_id=None,
            channel_name="crash",
            story=NewStory(
                "v.txt",
                1,
                "k",
                text,
                hashlib.sha256(text.encode()).hexdigest(),
                "utf-8",
                len(text),
                50,
                50,
            ),
            append=False,
            requested_by=1,
            requested_by_name="k",
            options={},
        )
        committing = time.perf_counter()
        record = await store.activate_model(
            job_id=job.id,
            channel_id=channel_id,
            model=NewModel(
                config=base.config.to_dict(),
                vocabulary=vocabulary,
                blob=blob,
                figures={
                    "symbols": 50,
                    "windows": 1,
                    "learnable_windows": 1,
                    "epochs": 1,
                    "seconds": 0.1,
                    "loss": 1.0,
                    "accuracy": 0.5,
                    "learnable_accuracy": 0.5,
                },
                options={},
            ),
            story_ids=job.story_ids,
            keep_versions=KEEP,
        )
        assert record.version == version
        done = time.perf_counter()
        print(
            f"committed {version} {hashlib.sha256(blob).hexdigest()} "
            f"{done - committing:.6f} {done - started:.6f}",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
