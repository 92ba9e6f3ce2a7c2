"""Turn raw Unicode prose into symbols (words and punctuation) and back.

Rules of :func:`tokenize` (one documented way for each case):

* The text is NFC-normalized; a byte-order mark and ``\\r\\n``/``\\r`` line endings are
  normalized; whitespace separates symbols. Underscores (Gutenberg's italics markup) are dropped.
* **Paragraph breaks** become the symbol ``\\n`` (:data:`PARAGRAPH`): a blank line, or every line
  break in a text that has no blank line at all (one paragraph a line). A text that is one line
  (the article's story) has none; breaks at the very start or end are dropped.
* A number with inner ``. , : /`` (``3.5``, ``1,000``, ``10:30``) is one symbol.
* A **word** is a run of letters, digits and combining marks. A hyphen or apostrophe *between*
  two letters stays inside the word (``cat-maiden``, ``don't``, ``ass’s``), as the story wrote
  it (``’`` stays curly; :meth:`~model.vocabulary.Vocabulary.encode` matches either form). A
  trailing ``s’`` (``boys’``) is read as a closing quote.
* **Quotes** become curly symbols: ``“`` opens, ``”`` closes (a straight ``"`` is opening
  when it follows whitespace, the start or an opening bracket/quote, closing otherwise);
  single quotes likewise ``‘`` / ``’``; ``«`` and ``»`` stay.
* **Dashes**: ``—``, ``―``, ``–`` and ``--`` all become the one symbol ``—``.
  **Ellipses**: ``…`` and two or more dots become ``…``.
* Every other punctuation mark (``, . ; : ? ! ¿ ¡ ( )`` ...) is one symbol per character.
* Characters of scripts written without spaces (Han, Hiragana, Katakana, Thai, ...) are one
  symbol each, so such text still trains.
* Lower-case by default (``lowercase=False`` keeps case).

:func:`detokenize` renders symbols as prose: no space before ``, . ; : ? ! … ) ”`` etc.,
no space after ``¿ ¡ ( “`` etc.; a dash joined to a word before it (``said—quietly``) but, after
punctuation or a paragraph break, spaced before and joined after, as Spanish dialogue writes it
(``¿por qué? —preguntó``); no spaces between characters of spaceless scripts nor between them
and punctuation (``问他：“爷爷…”``); a paragraph break as a new line.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# Scripts written without spaces between words: one symbol per character.
_SPACELESS = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u31f0-\u31ff"  # Katakana extension
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified
    "\uf900-\ufaff"  # CJK compatibility
    "\U00020000-\U0002fa1f"  # CJK extensions B-F, compatibility supplement
)
_LETTER = rf"(?:[^\W_{_SPACELESS}]|[\u0300-\u036f])"
_APOSTROPHES = "'’ʼ"
_TOKEN = re.compile(
    r"(?P<number>\d+(?:[.,:/]\d+)+)"
    rf"|(?P<word>{_LETTER}+(?:(?:[{_APOSTROPHES}]|-){_LETTER}+)*)"
    r"|(?P<ellipsis>…|\.{2,})"
    r"|(?P<dash>--+|[—―–])"
    rf"|(?P<spaceless>[{_SPACELESS}])"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)
_OPENERS = frozenset("([{“‘«¿¡")
_CLOSERS = frozenset(",.;:?!…)]}”’»%")
PARAGRAPH = "\n"
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_SPACELESS_RE = re.compile(rf"[{_SPACELESS}\u3000-\u303f\uff00-\uffef]")
_DOUBLE_QUOTES = {"“": "“", "„": "“", "”": "”", "«": "«", "»": "»"}
_SINGLE_QUOTES = {"‘": "‘", "‚": "‘", "’": "’"}


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    return text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n").replace("_", " ")


def tokenize(text: str, *, lowercase: bool = True) -> list[str]:
    """Split raw prose into symbols; see the module docstring for the exact rules."""
    return [symbol for symbol, _, _ in token_spans(text, lowercase=lowercase)[1]]


def token_spans(text: str, *, lowercase: bool = True) -> tuple[str, list[tuple[str, int, int]]]:
    """The normalized text and its symbols with their ``[start, end)`` spans in it.

    The same symbols as :func:`tokenize`; a paragraph break's span is the whitespace it came
    from. Used to cut symbols out of a text (``model.filtering.mask_text``).
    """
    spans: list[tuple[str, int, int]] = []
    text = _normalize(text)
    blank_lines = _BLANK_LINE.search(text) is not None
    # Whether the previous character was whitespace / start / opener: decides "open" for ".
    opening_position = True
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        piece = match.group()
        if kind == "space":
            opening_position = True
            paragraph = _BLANK_LINE.search(piece) if blank_lines else "\n" in piece
            if paragraph and spans and spans[-1][0] != PARAGRAPH:
                spans.append((PARAGRAPH, match.start(), match.end()))
            continue
        if kind == "number":
            symbol = piece
        elif kind == "word":
            symbol = piece.replace("ʼ", "’")
        elif kind == "ellipsis":
            symbol = "…"
        elif kind == "dash":
            symbol = "—"
        elif piece == '"':
            symbol = "“" if opening_position else "”"
        elif piece == "'":
            symbol = "‘" if opening_position else "’"
        elif piece in _DOUBLE_QUOTES:
            symbol = _DOUBLE_QUOTES[piece]
        elif piece in _SINGLE_QUOTES:
            symbol = _SINGLE_QUOTES[piece]
        else:
            symbol = piece
        spans.append((symbol.lower() if lowercase else symbol, match.start(), match.end()))
        opening_position = symbol in _OPENERS or symbol == "—"
    if spans and spans[-1][0] == PARAGRAPH:
        spans.pop()
    return text, spans


def _is_spaceless(symbol: str) -> bool:
    return len(symbol) == 1 and _SPACELESS_RE.match(symbol) is not None


def _is_word(symbol: str) -> bool:
    return any(ch.isalnum() for ch in symbol) and not _is_spaceless(symbol)


def detokenize(symbols: Sequence[str]) -> str:
    """Render symbols as natural prose (see the module docstring)."""
    out: list[str] = []
    previous: str | None = None
    straight_open = False  # parity of straight quotes, for symbols from other sources
    for symbol in symbols:
        if not symbol:
            continue
        if symbol == PARAGRAPH:
            if previous is not None and previous != PARAGRAPH:
                out.append("\n")
            previous = PARAGRAPH
            continue
        space = previous is not None and previous != PARAGRAPH
        if symbol == '"':
            straight_open = not straight_open
            if straight_open:
                space = space and previous not in _OPENERS
                out.append((" " if space else "") + symbol)
                previous = "“"
                continue
            space = False
        if symbol == "—":
            # After a word: an em dash joined to it; after punctuation: a dialogue dash.
            clause = previous is None or previous == PARAGRAPH or not _is_word(previous)
            space = space and clause and previous not in _OPENERS
            out.append((" " if space else "") + symbol)
            previous = symbol
            continue
        if previous is not None and (
            symbol in _CLOSERS
            or previous in _OPENERS
            or previous == "—"
            or (_is_spaceless(symbol) and not _is_word(previous))
            or (_is_spaceless(previous) and not _is_word(symbol))
        ):
            space = False
        out.append((" " if space else "") + symbol)
        previous = symbol
    return "".join(out)
