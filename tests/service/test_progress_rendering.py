"""Issue 25: a training's progress tells the truth. A trainer's TrainingProgress reaches the
adapters as the core reports it (OpenJob.report); the Discord message, the story card and the
console's bar show the expected end ("epoch 2 of about 9", "about 40 s left"), "estimating"
before there is one, an upper bound said as one, and the end line says why the training
stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import io

import pytest

from bot.adapters.progress_bar import ProgressBar
from bot.adapters.text import trained_text
from bot.core.api import ChannelRef, JobProgress, JobResult, TrainingJob
from bot.core.job_records import OpenJob
from bot.core.store import JobState
from bot.core.validation import JobOptions
from bot.discord_adapter.rendering import progress_text, result_text
from model.serialization import TrainingFigures
from model.training_progress import TrainingProgress
from tests.support import empty_story_card

CHANNEL = ChannelRef(guild_id=1, channel_id=2, name="story")

# After epoch 2 of a book: 20 s done, the plateau stop expected at epoch 6, 40 s to go.
AFTER_EPOCH_2 = TrainingProgress(
    epoch=2,
    max_epochs=300,
    loss=5.4,
    accuracy=0.12,
    learnable_accuracy=0.13,
    elapsed_seconds=20.0,
    eta_seconds=40.0,
    val_loss=5.3,
    val_accuracy=0.14,
    step=70,
    steps_per_epoch=70,
    expected_epochs=6.0,
)


async def _reported(progress: TrainingProgress) -> JobProgress:
    """``progress`` as the core hands it to adapters: the trainer's dict on a running job."""
    job = OpenJob(
        job_id=7,
        channel=CHANNEL,
        requested_by=None,
        story_ids=(1,),
        options=JobOptions(model={}, training={"max_epochs": 300}, requested={}),
        result=asyncio.get_running_loop().create_future(),
        state=JobState.RUNNING,
        progress=dataclasses.asdict(progress),
    )
    return job.report(queue_position=None)


async def test_discord_progress_fills_toward_the_expected_end() -> None:
    text = progress_text("aesop.txt", await _reported(AFTER_EPOCH_2))
    # A third of the expected time, not 2 of 300 epochs.
    assert "`" + "█" * 7 + "░" * 13 + "` 33% · epoch 2 of about 6" in text
    assert "elapsed 20 s · about 40 s left" in text
    assert "/300" not in text and "at most" not in text


async def test_discord_progress_says_estimating_before_the_first_estimate() -> None:
    epoch_1 = dataclasses.replace(
        AFTER_EPOCH_2, epoch=1, elapsed_seconds=10.0, eta_seconds=None, expected_epochs=None
    )
    text = progress_text("aesop.txt", await _reported(epoch_1))
    assert "elapsed 10 s · estimating the time left" in text
    assert "epoch 1/300" in text and "about" not in text


async def test_an_upper_bound_is_said_as_one() -> None:
    # A story without a held-out split: its end (all learned) is not estimated, the ETA runs
    # to the epoch limit or the time budget.
    short = dataclasses.replace(AFTER_EPOCH_2, val_loss=None, expected_epochs=None)
    text = progress_text("cat.txt", await _reported(short))
    assert "epoch 2/300" in text and "elapsed 20 s · at most 40 s left" in text


async def test_console_bar_fills_toward_the_expected_end() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, width=12)
    bar(await _reported(AFTER_EPOCH_2))
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("[####--------] epoch 2 of about 6  loss 5.400")
    assert line.endswith("20.0 s  about 40 s left")


def _figures(stopped: str) -> TrainingFigures:
    return TrainingFigures(
        symbols=17_700,
        windows=17_690,
        learnable_windows=15_000,
        epochs=9,
        seconds=69.0,
        loss=4.1,
        accuracy=0.2,
        learnable_accuracy=0.21,
        val_accuracy=0.18,
        val_perplexity=152.3,
        stopped=stopped,
        vocabulary_size=2661,
    )


@pytest.mark.parametrize(
    ("stopped", "said"),
    [
        ("plateau", "stopped when more epochs stopped helping"),
        ("learned", "learned the whole story"),
        ("max_seconds", "stopped at the time limit"),
        ("max_epochs", "stopped at the epoch limit"),
    ],
)
def test_the_end_line_says_why_the_training_stopped(stopped: str, said: str) -> None:
    result = JobResult(7, "done", None, 3, _figures(stopped))
    assert f"9 epochs in 1 min 09 s · {said}\n" in result_text("aesop.txt", result)
    job = TrainingJob(7, CHANNEL, "done", None, 1, (1,), None)
    assert trained_text(job, result, "aesop.txt").endswith(
        f"s, accuracy on learnable windows 21.0%. It {said}."
    )


def test_a_cancelled_training_says_so() -> None:
    result = JobResult(7, "cancelled", "Training was cancelled.", None, None)
    assert result_text("aesop.txt", result) == (
        "**Cancelled** aesop.txt · job #7\nTraining was cancelled."
    )


async def test_the_story_cards_show_the_expected_end() -> None:
    from bot.adapters.text import card_text
    from bot.discord_adapter.cards import story_card_embed

    card = empty_story_card(CHANNEL, stories=1, job=await _reported(AFTER_EPOCH_2))
    assert "  training job #7: running, epoch 2 of about 6" in card_text(card, "#story")
    fields = [f.value for f in story_card_embed(card, permission="Manage Channels").fields]
    assert any("epoch 2 of about 6, about 40 s left" in (value or "") for value in fields), fields


async def test_a_spanish_server_reads_the_expected_end_and_why_it_stopped() -> None:
    import discord

    from bot.discord_adapter.i18n import Catalogue

    spanish = Catalogue.load().language(discord.Locale.spain_spanish)
    text = progress_text("aesop.txt", await _reported(AFTER_EPOCH_2), spanish)
    # Spanish figures: a decimal comma, a no-break space before the percent sign.
    assert "33\u00a0% · época 2 de unas 6" in text
    assert "pérdida 5,400 · precisión 12,0\u00a0% · aprendible 13,0\u00a0%" in text
    assert "transcurrido 20 s · quedan unos 40 s" in text
    epoch_1 = dataclasses.replace(
        AFTER_EPOCH_2, epoch=1, elapsed_seconds=10.0, eta_seconds=None, expected_epochs=None
    )
    text = progress_text("aesop.txt", await _reported(epoch_1), spanish)
    assert "época 1/300" in text and "calculando el tiempo restante" in text
    result = JobResult(7, "done", None, 3, _figures("plateau"))
    assert "9 épocas en 1 min 09 s · se ha detenido cuando más épocas ya no ayudaban\n" in (
        result_text("aesop.txt", result, spanish)
    )
