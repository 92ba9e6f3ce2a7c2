"""A training's progress and end in words, shared by Discord (in the reader's language) and the
CLI and console (English): how long, which epoch of how many, how much time is left, why it
stopped."""

from __future__ import annotations

import math

from bot.adapters.language import ENGLISH, N_, Language


def format_duration(seconds: float | None, lang: Language = ENGLISH) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min`` (``42 秒``...); ``?`` when unknown."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return "?"
    total = round(seconds)
    if total < 60:
        return lang.gettext("{seconds} s", seconds=total)
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return lang.gettext("{minutes} min {seconds} s", minutes=minutes, seconds=f"{secs:02d}")
    hours, minutes = divmod(minutes, 60)
    return lang.gettext("{hours} h {minutes} min", hours=hours, minutes=f"{minutes:02d}")


def epoch_text(
    epoch: int, max_epochs: int, expected_epochs: float | None, lang: Language = ENGLISH
) -> str:
    """``epoch 5 of about 9`` (the expected end) or ``epoch 5/300`` (the limit) before one."""
    if expected_epochs is not None and not math.isnan(expected_epochs):
        return lang.gettext(
            "epoch {epoch} of about {epochs}",
            epoch=epoch,
            epochs=max(epoch, round(expected_epochs)),
        )
    return lang.gettext("epoch {epoch}/{epochs}", epoch=epoch, epochs=max_epochs)


def time_left_text(
    eta_seconds: float | None, expected_epochs: float | None, lang: Language = ENGLISH
) -> str:
    """The ETA in words: ``about 40 s left`` (an estimate of the expected end), ``at most 3 min
    05 s left`` (the epoch limit or the time budget: stories without a held-out split, whose
    end is not estimated) or ``estimating the time left`` (before the first estimate)."""
    shown = format_duration(eta_seconds, lang)
    if shown == "?":
        return lang.gettext("estimating the time left")
    if expected_epochs is None:
        return lang.gettext("at most {time} left", time=shown)
    return lang.gettext("about {time} left", time=shown)


# Why a training ended (model.serialization.TrainingFigures.stopped), in words.
STOP_REASONS = {
    "learned": N_("learned the whole story"),
    "plateau": N_("stopped when more epochs stopped helping"),
    "max_seconds": N_("stopped at the time limit"),
    "max_epochs": N_("stopped at the epoch limit"),
}


def stop_reason_text(stopped: str | None, lang: Language = ENGLISH) -> str:
    """Why a training ended, in words; "" for a reason not known here (an older model)."""
    reason = STOP_REASONS.get(stopped) if stopped is not None else None
    return lang.gettext(reason) if reason is not None else ""
