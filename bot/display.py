"""Presentation helpers shared by every adapter (Discord, console, CLI).

Pure functions: this module imports neither discord nor TensorFlow, so the console and the
Discord rendering both use it. The model and the service keep lower-case symbols (the
originality figures and the article-exact checks compare them); capitals are only added here,
for what people read.
"""

from __future__ import annotations

import re

KIB = 1 << 10
MIB = 1 << 20

# A sentence end (optionally closed by quotes or brackets), the space after it and any opening
# quotes, brackets, ¿ ¡ or a dialogue dash, then a word character (capitalised if it has case).
_SENTENCE_START = re.compile(r"([.!?…。！？])([\"”’'»)\]]*)(\s+)([\"“‘'«(\[¿¡—]*)(\w)")
_PARAGRAPH_START = re.compile(r"(^|\n)([\s\"“‘'«(\[¿¡—]*)(\w)")
_PRONOUN_I = re.compile(r"(?<![\w'’])i(?=(?:['’](?:m|ll|ve|d))?(?![\w'’]))")


def _sentence_start(m: re.Match[str]) -> str:
    end, closers, space, openers, letter = m.groups()
    # “Why?” asked he / ¿Por qué? —preguntó: a question or exclamation closed by a quote, or
    # followed by a dialogue dash, goes on with the same sentence.
    if end in "?!？！" and (closers or openers.startswith("—")):
        return m.group(0)
    return end + closers + space + openers + letter.upper()


def display_prose(text: str) -> str:
    """Capitalise sentence starts and the pronoun "I" in generated prose, for display.

    The first letter of the text and of each paragraph (a new line) is capitalised unless the
    text starts with "…" (a continuation of earlier text); so is a letter after ``. ! ? …``
    (or ``。！？``) and whitespace, with closing quotes between and opening quotes, brackets,
    ``¿ ¡`` or a dash before the letter: any letter that has a capital (``¿Por qué``,
    ``Über``). A ``?`` or ``!`` closed by a quote (``“Why?” asked he``) or followed by a
    dialogue dash (``¿Por qué? —preguntó``) does not end the sentence. Standalone ``i``,
    ``i'm``, ``i'll``, ``i've`` and ``i'd`` become ``I``, ``I'm``, ...
    """
    text = _PRONOUN_I.sub("I", text)
    text = _SENTENCE_START.sub(_sentence_start, text)
    lead = text.startswith("…")
    return _PARAGRAPH_START.sub(
        lambda m: (
            m.group(0) if lead and m.start() == 0 else m.group(1) + m.group(2) + m.group(3).upper()
        ),
        text,
    )


def format_bytes(n: int) -> str:
    """``512 bytes``, ``40 KiB``, ``4.0 MiB`` (binary units, as the size limits are set)."""
    if n >= MIB:
        return f"{n / MIB:,.1f} MiB"
    if n >= KIB:
        return f"{n / KIB:,.0f} KiB"
    return f"{n:,} byte{'' if n == 1 else 's'}"


def training_fraction(
    epoch: int, max_epochs: int, elapsed_seconds: float, eta_seconds: float | None
) -> float:
    """How far a training is, 0..1, for a progress bar.

    Once the ETA is known the time share ``elapsed / (elapsed + ETA)``: the ETA runs to the
    expected end (the epoch the plateau stop is expected at, or the time budget), so the bar
    fills toward it rather than toward ``max_epochs``. Before the first ETA the epoch share.
    """
    if eta_seconds is not None and eta_seconds >= 0 and elapsed_seconds >= 0:
        total = elapsed_seconds + eta_seconds
        share = elapsed_seconds / total if total > 0 else 0.0
    else:
        share = epoch / max_epochs if max_epochs > 0 else 0.0
    if share != share:  # NaN
        return 0.0
    return min(1.0, max(0.0, share))


def format_duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def epoch_text(epoch: int, max_epochs: int, expected_epochs: float | None) -> str:
    """``epoch 5 of about 9`` (the expected end) or ``epoch 5/300`` (the limit) before one."""
    if expected_epochs is not None and expected_epochs == expected_epochs:
        return f"epoch {epoch} of about {max(epoch, round(expected_epochs))}"
    return f"epoch {epoch}/{max_epochs}"


def time_left_text(eta_seconds: float | None, expected_epochs: float | None) -> str:
    """The ETA in words: ``about 40 s left`` (an estimate of the expected end), ``at most 3 min
    05 s left`` (the epoch limit or the time budget: stories without a held-out split, whose
    end is not estimated) or ``estimating the time left`` (before the first estimate)."""
    shown = format_duration(eta_seconds)
    if shown == "?":
        return "estimating the time left"
    if expected_epochs is None:
        return f"at most {shown} left"
    return f"about {shown} left"


# Why a training ended (model.serialization.TrainingFigures.stopped), in words.
STOP_REASONS = {
    "learned": "learned the whole story",
    "plateau": "stopped when more epochs stopped helping",
    "max_seconds": "stopped at the time limit",
    "max_epochs": "stopped at the epoch limit",
}


def stop_reason_text(stopped: str) -> str:
    """Why a training ended, in words; "" for a reason not known here (an older model)."""
    return STOP_REASONS.get(stopped, "")


def vocabulary_text(size: int | None, cap: int | None, covered_share: float | None) -> str:
    """``4,455 (cap 10,000, covers 100.0% of the text)``: the card's vocabulary line."""
    if size is None:
        return "unknown"
    details = []
    if cap is not None:
        details.append(f"cap {cap:,}")
    if covered_share is not None:
        details.append(f"covers {covered_share:.1%} of the text")
    return f"{size:,}" + (f" ({', '.join(details)})" if details else "")


def count_text(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``, ``1,204 symbols`` (regular plurals only)."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def known(value: float | None) -> bool:
    """A figure worth showing: not missing and not NaN (e.g. an accuracy over no windows)."""
    return value is not None and value == value
