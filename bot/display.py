"""Presentation helpers shared by every adapter (Discord, console, CLI).

Pure functions: this module imports neither discord nor TensorFlow, so the console and the
Discord rendering both use it. The model and the service keep lower-case symbols (the
originality figures and the article-exact checks compare them); capitals are only added here,
for what people read.
"""

from __future__ import annotations

import re

from bot.messages import Number, Phrase, Plural

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


def byte_size(n: int) -> Phrase:
    """``512 bytes``, ``40 KiB``, ``4.0 MiB`` (binary units, as the size limits are set), as a
    phrase an adapter may say in another language."""
    if n >= MIB:
        return Phrase("{size} MiB", size=Number(n / MIB, 1))
    if n >= KIB:
        return Phrase("{size} KiB", size=Number(n / KIB))
    return Plural("{count} byte", "{count} bytes", n, count=Number(n))


def format_bytes(n: int) -> str:
    """``byte_size`` in English."""
    return byte_size(n).english()


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


def count_text(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``, ``1,204 symbols`` (regular plurals only)."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def known(value: float | None) -> bool:
    """A figure worth showing: not missing and not NaN (e.g. an accuracy over no windows)."""
    return value is not None and value == value
