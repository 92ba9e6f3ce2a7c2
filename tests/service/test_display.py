"""bot.display: prose capitalisation, byte sizes and the training progress share (pure)."""

from __future__ import annotations

import dataclasses
import io

import pytest

from bot.adapters.progress_bar import ProgressBar
from bot.core.api import JobProgress
from bot.discord_adapter.rendering import continuation_text, progress_text
from bot.display import display_prose, format_bytes, training_fraction
from model import detokenize, tokenize
from tests.support import empty_story_card


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("had a general council. the mice", "Had a general council. The mice"),
        ("what? no! yes… and so", "What? No! Yes… And so"),
        ("“we will,” said they. “no.” the cat", "“We will,” said they. “No.” The cat"),
        ("he said “yes.” then left", "He said “yes.” Then left"),
        (
            "i said i'm here, i'll go, i've been, i'd say",
            "I said I'm here, I'll go, I've been, I'd say",
        ),
        ("i’m curly", "I’m curly"),
        ("in it is idle; it's i", "In it is idle; it's I"),
        ("…could take to outwit. their enemy", "…could take to outwit. Their enemy"),
        ("“the mice", "“The mice"),
        ("", ""),
        ("3 mice. 4 cats", "3 mice. 4 cats"),
        # Issue 11: any cased letter, ¿ ¡ and dashes as openers, paragraphs, dialogue tags.
        ("¿por qué? —preguntó él. über alles", "¿Por qué? —preguntó él. Über alles"),
        ("silencio.\n—¡vamos! —dijo", "Silencio.\n—¡Vamos! —dijo"),
        ("“why?” asked he. “no!” said she", "“Why?” asked he. “No!” said she"),
        ("the cat\nlong ago", "The cat\nLong ago"),
        ("问他：“爷爷呢？”老木匠", "问他：“爷爷呢？”老木匠"),
    ],
)
def test_display_prose(text: str, shown: str) -> None:
    assert display_prose(text) == shown


def test_display_prose_leaves_the_model_text_alone() -> None:
    text = detokenize(tokenize("Long ago, the mice had a general council. I'm sure."))
    assert text == "long ago, the mice had a general council. i'm sure."
    assert display_prose(text) == "Long ago, the mice had a general council. I'm sure."


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1,023 bytes"),
        (1024, "1 KiB"),
        (100_000, "98 KiB"),
        (4 << 20, "4.0 MiB"),
        (160 << 20, "160.0 MiB"),
    ],
)
def test_format_bytes(n: int, shown: str) -> None:
    assert format_bytes(n) == shown


def test_training_fraction_uses_time_once_the_eta_is_known() -> None:
    # Epoch 3 of 100, but a quarter of the expected time: training stops long before 100.
    assert training_fraction(3, 100, 10.0, 30.0) == pytest.approx(0.25)
    assert training_fraction(3, 100, 10.0, None) == pytest.approx(0.03)
    assert training_fraction(50, 100, 20.0, 0.0) == 1.0
    assert training_fraction(0, 0, 0.0, None) == 0.0
    assert training_fraction(0, 0, 0.0, 0.0) == 0.0


def test_progress_text_bar_follows_the_time_share() -> None:
    progress = JobProgress(
        job_id=7,
        state="running",
        epoch=5,
        max_epochs=500,
        loss=1.5,
        accuracy=0.5,
        learnable_accuracy=0.6,
        eta_seconds=10.0,
        elapsed_seconds=10.0,
        queue_position=None,
    )
    text = progress_text("story.txt", progress)
    assert "50% · epoch 5/500" in text
    assert "`" + "█" * 10 + "░" * 10 + "`" in text
    # No expected end (no held-out split): the ETA runs to the epoch limit or the time budget,
    # an upper bound, said as one.
    assert "elapsed 10 s · at most 10 s left" in text
    unknown = progress_text("story.txt", dataclasses.replace(progress, eta_seconds=None))
    assert unknown.endswith("elapsed 10 s · estimating the time left")


def test_continuation_text_capitalises_but_not_after_a_lead() -> None:
    shown = continuation_text("had a general council. the mice", model_version=2, original_share=1)
    assert shown.startswith("Had a general council. The mice\n-# model v2 · 100% from the story")
    more = continuation_text(
        "could take. to outwit", model_version=2, original_share=None, lead="…"
    )
    assert more.startswith("…could take. To outwit\n")
    # Capitalised first, escaped after: markdown still cannot format.
    assert continuation_text("*bold* i", model_version=1, original_share=None).startswith(
        "\\*bold\\* I"
    )


def test_the_unknown_words_note() -> None:
    from bot.adapters.text import unknown_words_text
    from bot.core.api import UnknownWord

    mondays = UnknownWord("mondays", ("monday", "monkeys", "money"))
    assert unknown_words_text([]) == ""
    assert unknown_words_text([UnknownWord("monday", ("mondays",))]) == (
        "I didn't know 'monday': did you mean 'mondays'?"
    )
    assert unknown_words_text([mondays]) == (
        "I didn't know 'mondays': did you mean 'monday', 'monkeys' or 'money'?"
    )
    assert unknown_words_text([UnknownWord("zebra")]) == "I didn't know 'zebra'."
    assert unknown_words_text([UnknownWord("i"), mondays]) == (
        "I didn't know 'i' or 'mondays' (did you mean 'monday', 'monkeys' or 'money'?)."
    )
    many = [UnknownWord(word) for word in "abcdefg"]
    assert unknown_words_text(many) == "I didn't know 'a', 'b', 'c', 'd', 'e' or 2 other words."


def test_story_card_names_the_configured_permission_and_shows_the_notice() -> None:
    from bot.core.api import ChannelRef, RetrainReason
    from bot.discord_adapter.cards import story_card_embed

    card = empty_story_card(
        ChannelRef(1, 2, "story"), notice=RetrainReason(removed_story_id=3, filename="*x*.txt")
    )
    embed = story_card_embed(card, permission="Manage Guild")
    assert "Someone with Manage Guild can teach" in (embed.description or "")
    notes = [f.value for f in embed.fields if f.name == "Note"]
    assert notes == ["retraining after story #3 (\\*x\\*.txt) was removed"]


async def test_console_progress_bar_is_full_when_the_story_is_learned() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, width=10)

    def progress(state: str, epoch: int, eta: float | None) -> JobProgress:
        return JobProgress(
            job_id=1,
            state=state,
            epoch=epoch,
            max_epochs=300,
            loss=0.5,
            accuracy=0.9,
            learnable_accuracy=0.9,
            eta_seconds=eta,
            elapsed_seconds=2.0,
            queue_position=None,
        )

    bar(progress("running", 28, 18.0))  # the ETA still counts the remaining epochs
    bar(progress("done", 28, 18.0))  # ... but the story was learned at epoch 28
    running, done = out.getvalue().splitlines()
    assert running.startswith("[#---------] epoch 28/300")
    assert done.startswith("[##########] epoch 28/300") and done.endswith("done")
