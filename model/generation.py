"""Continue a story with a pure-numpy forward pass of the trained weights (no TensorFlow).

Each next symbol is predicted like in training: the last ``n_input`` symbols are run through
the LSTM from a zero state and the dense layer gives logits over the vocabulary
(:mod:`model.forward` pipelines the overlapping windows and computes only the logits of the
candidate symbols; issue 16).

**Prompts shorter than n_input** are completed on the left with the story's own most frequent
predecessors of the prompt's first symbol (``weights["left_context"]``, computed from the
training story), so the network sees a context shaped like its training windows. When the
story has no such predecessor (the symbol only occurs at the very start), the context is run
as it is, shorter — an LSTM accepts any length. An empty prompt starts from the zero state.
**Longer prompts** use their last ``n_input`` symbols.

**Unknown words** (issue 23) never refuse a prompt: a word the vocabulary lacks maps to
``<unk>`` when the vocabulary has it (capped vocabularies), otherwise it is left out of the
context, which is then the prompt's last ``n_input`` known symbols (fewer are completed on the
left as above; none at all start from the zero state, as an empty prompt). :func:`continue_prompt`
returns the unknown words of the part of the prompt it read, with suggestions
(:class:`~model.vocabulary.UnknownWord`), for the caller to tell; a word before that part
changes nothing and is not named.

**Choosing the next symbol** (issue 11; ``bench/bench_continuation_quality.py``). A network
asked about a window the story never has (``mouse mouse mouse``) answers almost anything, so:

* ``follow_story``: the candidates are the story's own continuations of the longest suffix of
  the prompt and reply so far (at most :func:`default_story_order` symbols) that the story
  contains (:class:`StoryIndex`, stored with the weights); the network ranks them. On a window
  the network has learned, its choice is one of them anyway: Listing 11 is unchanged.
* ``no_repeat_ngram`` (4): a symbol that would repeat a 4-gram of the prompt or the reply is
  not chosen (greedy decoding otherwise loops on long stories). When every story continuation
  is ruled out, the network chooses among all symbols, never the previous one again.
* Sampling (``temperature`` > 0) applies ``top_k``, then ``top_p`` (nucleus, default 0.9), and
  is seeded by ``seed``; greedy decoding (0) has one possible output, whatever the seed.
  Greedy decoding is :class:`GenerationOptions`' default (the article's); a bot's replies are
  sampled at :data:`REPLY_TEMPERATURE` (issue 23: greedy, every prompt of a long story runs
  into the same passage).
* ``avoid`` (a channel's recent replies): their n-grams are ruled out like the reply's own, so
  a channel's bot does not say again what it just said.

**Replies shaped as messages** (``whole_messages``, issue 23): a story with paragraph symbols
(a chat history stores a message a paragraph) has its reply cut at the last message end (the
paragraph symbol, left out) or sentence end within ``length``, whichever comes later; with
neither, it ends at ``length`` as before.

**Filtered words** (``blocked``, :class:`~model.filtering.BlockedSymbols`) are masked out of
the logits first, before the story's candidates, the repeat guard and sampling are applied, and
are never lifted: when every candidate is filtered, the best unfiltered symbol of the whole
vocabulary is chosen; only a filter that bans the whole vocabulary raises ``ModelError``.

``<unk>`` (capped vocabularies) is never generated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import numpy as np
import numpy.typing as npt

from model.errors import EverythingFiltered, ModelError
from model.filtering import BlockedSymbols
from model.forward import NumpyLSTM, Stepper, single_threaded_blas
from model.serialization import TrainedModel
from model.story_index import IntArray, StoryIndex, default_story_order, story_index_arrays
from model.tokenizer import PARAGRAPH
from model.vocabulary import UNKNOWN, UnknownWord, Vocabulary

__all__ = [
    "REPLY_TEMPERATURE",
    "Generation",
    "GenerationOptions",
    "NumpyLSTM",
    "StoryIndex",
    "continue_prompt",
    "default_story_order",
    "generate",
    "left_context_table",
    "read_prompt",
    "story_index_arrays",
    "whole_messages",
]

SENTENCE_END = frozenset({".", "!", "?", "…", "。", "！", "？"})
CLOSING = frozenset({"”", "’", "»", ")", "」", "』"})
# Defaults measured with bench/bench_continuation_quality.py (docs/continuation-quality.md).
DEFAULT_TOP_P = 0.9
DEFAULT_NO_REPEAT_NGRAM = 4
# A reply's decoding (issue 23): sampled, so different prompts and requests get different
# replies; GenerationOptions itself stays greedy, the article's method.
REPLY_TEMPERATURE = 0.8


@dataclass(frozen=True)
class GenerationOptions:
    """How to pick each next symbol (see the module docstring).

    ``seed`` only matters when ``temperature`` > 0: greedy decoding (0, the article's) has one
    possible output. ``top_k`` and ``top_p`` (nucleus: the fewest likeliest symbols whose
    probabilities add up to ``top_p``) also apply only when sampling. ``follow_story`` keeps
    each next symbol among the story's own continuations of the longest context the story
    contains; ``no_repeat_ngram`` n forbids a symbol that would repeat an n-gram already in
    the prompt or the reply (None or 0 = allowed). ``whole_messages``: a story with
    paragraphs has its reply end at a message or sentence end (see :func:`whole_messages`).
    """

    length: int = 32
    temperature: float = 0.0  # 0 = greedy (the article)
    top_k: int | None = None
    seed: int | None = None
    stop_at_sentence_end: bool = False
    top_p: float | None = DEFAULT_TOP_P
    follow_story: bool = True
    no_repeat_ngram: int | None = DEFAULT_NO_REPEAT_NGRAM
    story_order: int | None = None
    whole_messages: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise ModelError("length must be a whole number.")
        if not 1 <= self.length <= 10_000:
            raise ModelError("length must be from 1 to 10000.")
        if not isinstance(self.temperature, int | float) or not 0.0 <= self.temperature <= 100.0:
            raise ModelError("temperature must be from 0 to 100.")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ModelError("top_k must be a whole number >= 1.")
        if self.top_p is not None and (
            not isinstance(self.top_p, int | float) or not 0.0 < self.top_p <= 1.0
        ):
            raise ModelError("top_p must be a number above 0 and at most 1.")
        if self.no_repeat_ngram is not None and (
            isinstance(self.no_repeat_ngram, bool)
            or not isinstance(self.no_repeat_ngram, int)
            or not 0 <= self.no_repeat_ngram <= 64
        ):
            raise ModelError("no_repeat_ngram must be a whole number from 0 to 64.")
        if self.story_order is not None and (
            isinstance(self.story_order, bool)
            or not isinstance(self.story_order, int)
            or not 1 <= self.story_order <= 64
        ):
            raise ModelError("story_order must be a whole number from 1 to 64.")


class _RepeatGuard:
    """Which symbols would repeat an n-gram already in the prompt or the reply, or one of the
    ``avoid`` texts (a channel's recent replies)."""

    def __init__(
        self, n: int | None, history: Sequence[int], avoid: Sequence[Sequence[int]] = ()
    ) -> None:
        self.n = n or 0
        self.history: list[int] = []
        self.followers: dict[tuple[int, ...], set[int]] = {}
        if self.n:
            for text in avoid:
                for end in range(self.n, len(text) + 1):
                    head = tuple(int(s) for s in text[end - self.n : end - 1])
                    self.followers.setdefault(head, set()).add(int(text[end - 1]))
        for symbol in history:
            self.add(symbol)

    def add(self, symbol: int) -> None:
        self.history.append(int(symbol))
        if self.n and len(self.history) >= self.n:
            head = tuple(self.history[len(self.history) - self.n : -1])
            self.followers.setdefault(head, set()).add(int(symbol))

    def banned(self) -> set[int]:
        if not self.n:
            return set()
        tail = tuple(self.history[len(self.history) - self.n + 1 :]) if self.n > 1 else ()
        return set(self.followers.get(tail, ()))


def _sample(
    scores: npt.NDArray[np.float64], options: GenerationOptions, rng: np.random.Generator
) -> int:
    """An index of ``scores`` (logits of the symbols that may come next, by ascending id: the
    story's candidates, or the whole vocabulary) drawn after ``top_k`` and ``top_p``."""
    if options.top_k is not None and options.top_k < len(scores):
        cut = np.partition(scores, -options.top_k)[-options.top_k]
        scores = np.where(scores >= cut, scores, -np.inf)
    scores = scores / options.temperature
    scores -= scores.max()
    p = np.exp(scores)
    p /= p.sum()
    if options.top_p is not None and options.top_p < 1.0:
        # The fewest likeliest symbols whose probabilities reach top_p (at least one). Only
        # the symbols with a probability are ranked (over the whole vocabulary, the banned
        # ones have none): in the same order as a stable sort of them all, as the ids ascend.
        likely = np.flatnonzero(p)
        ranked = likely[np.argsort(-p[likely], kind="stable")]
        size = int(np.searchsorted(np.cumsum(p[ranked]), options.top_p)) + 1
        nucleus = np.zeros_like(p)
        nucleus[ranked[:size]] = p[ranked[:size]]
        p = nucleus / nucleus.sum()
    return _choice(p, rng)


def _choice(p: npt.NDArray[np.float64], rng: np.random.Generator) -> int:
    """``rng.choice(len(p), p=p)`` without its checks of ``p`` (normalized here already):
    the same draw from the same stream, as numpy's ``Generator.choice`` makes it (the first
    index whose cumulative probability, divided by the total, exceeds one ``rng.random()``).
    8.1 -> 6.8 us for 112 symbols, 38.8 -> 19.5 us for 4,398 (medians, 2026-12-07);
    tests/model/test_generation.py compares the draws with numpy's."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random(), side="right"))


def _pick(
    stepper: Stepper,
    options: GenerationOptions,
    rng: np.random.Generator,
    banned: set[int],
    allowed: Sequence[IntArray],
    previous: int | None = None,
    forbidden: set[int] | None = None,
) -> int:
    vocab_size = len(stepper.w.dense_bias)
    # forbidden: the server's filtered words, the only bans never lifted.
    is_forbidden = np.zeros(vocab_size, dtype=bool)
    if forbidden:
        is_forbidden[list(forbidden)] = True
    is_banned = is_forbidden.copy()
    if banned:
        is_banned[list(banned)] = True
    # The longest story context with a continuation that is not banned decides the candidates,
    # and only their logits are computed (a gather of output rows, not the whole vocabulary);
    # when there is none, the network chooses freely, but never the previous symbol again.
    for candidates in allowed:
        keep = candidates[~is_banned[candidates]] if banned or forbidden else candidates
        if len(keep):
            chosen = stepper.logits(keep).astype(np.float64)
            if options.temperature <= 0.0:
                return int(keep[int(np.argmax(chosen))])  # ties: the lowest id, as argmax
            # Drawn among the candidates alone (ascending ids, as over the whole vocabulary
            # with the other symbols at probability 0): the same top_k, nucleus and draw, up
            # to the last bit of the normalizing sums (numpy groups a vocabulary's zeros in
            # its sums otherwise), so only a random number within that bit could differ.
            return int(keep[_sample(chosen, options, rng)])
    logits = stepper.logits()
    scores = logits.astype(np.float64)
    scores[is_banned] = -np.inf
    if previous is not None:
        scores[previous] = -np.inf
    if not np.isfinite(scores).any():
        scores = logits.astype(np.float64)  # every symbol banned: lift the soft bans, not filters
        scores[is_forbidden] = -np.inf
        if not np.isfinite(scores).any():
            raise EverythingFiltered()
    if options.temperature <= 0.0:
        return int(np.argmax(scores))
    return _sample(scores, options, rng)


@dataclass(frozen=True)
class Generation:
    """A continuation: the generated symbols (not the prompt), the ids of the prompt's part the
    network read, and the words of that part the vocabulary lacks."""

    symbols: list[str]
    context: list[int]
    unknown: tuple[UnknownWord, ...]


def read_prompt(
    vocabulary: Vocabulary, prompt: Sequence[str], n_input: int
) -> tuple[list[int], tuple[UnknownWord, ...]]:
    """The ids of the prompt's last ``n_input`` known symbols (an unknown word counts as
    ``<unk>`` where the vocabulary has it, otherwise it is skipped), and the unknown words met
    on the way back from the prompt's end."""
    unknown_id = vocabulary.id_of(UNKNOWN) if vocabulary.has_unknown else None
    ids: list[int] = []
    missing: list[str] = []
    for token in reversed(prompt):
        if len(ids) == n_input:
            break
        found = vocabulary.lookup(token)
        if found is None:
            missing.append(token)
            found = unknown_id
        if found is not None:
            ids.append(found)
    ids.reverse()
    missing.reverse()
    return ids, vocabulary.unknown_words(missing)


def continue_prompt(
    model: TrainedModel,
    prompt: Sequence[str],
    options: GenerationOptions | None = None,
    *,
    network: NumpyLSTM | None = None,
    blocked: BlockedSymbols | None = None,
    avoid: Sequence[Sequence[str]] = (),
) -> Generation:
    """Continue ``prompt`` from its known words (see the module docstring). Pass ``network`` to
    reuse its weights; ``blocked``: the filtered words' symbols, never generated; ``avoid``:
    texts (a channel's recent replies) whose ``no_repeat_ngram``-grams are not repeated."""
    options = options or GenerationOptions()
    ids, unknown = read_prompt(model.vocabulary, prompt, model.config.n_input)
    net = network or NumpyLSTM(model)
    avoided = [_known_ids(model.vocabulary, text) for text in avoid]
    with single_threaded_blas():
        symbols = _decode(model, net, ids, options, blocked, avoided)
    return Generation(symbols, ids, unknown)


def _known_ids(vocabulary: Vocabulary, text: Sequence[str]) -> list[int]:
    """The ids of ``text``'s symbols; a symbol the vocabulary lacks breaks every n-gram
    through it (-1 is never generated)."""
    return [-1 if (found := vocabulary.lookup(s)) is None else found for s in text]


class Steering(TypedDict, total=False):
    """:func:`continue_prompt`'s keyword arguments, for the functions that pass them on."""

    network: NumpyLSTM | None
    blocked: BlockedSymbols | None
    avoid: Sequence[Sequence[str]]


def generate(
    model: TrainedModel,
    prompt: Sequence[str],
    options: GenerationOptions | None = None,
    **steering: Unpack[Steering],
) -> list[str]:
    """The generated symbols only of :func:`continue_prompt` (unknown words are skipped)."""
    return continue_prompt(model, prompt, options, **steering).symbols


def _decode(
    model: TrainedModel,
    net: NumpyLSTM,
    ids: list[int],
    options: GenerationOptions,
    blocked: BlockedSymbols | None = None,
    avoid: Sequence[Sequence[int]] = (),
) -> list[str]:
    rng = np.random.default_rng(options.seed)
    unknown = model.vocabulary.id_of(UNKNOWN) if model.vocabulary.has_unknown else None
    story = net.story_index if options.follow_story else None
    context = net.padded_context(ids)
    stepper = net.stepper()
    for symbol in context:
        stepper.feed(symbol)
    history = list(ids)
    repeats = _RepeatGuard(options.no_repeat_ngram, ids, avoid)
    order = options.story_order or (default_story_order(len(story.story)) if story else 1)
    symbols = model.vocabulary.symbols
    out: list[str] = []

    def step() -> int:
        banned = repeats.banned()
        if unknown is not None:
            banned.add(unknown)
        allowed = story.continuations(history, order) if story else []
        # Off the story (only when following one), the previous symbol is not repeated.
        previous = history[-1] if history and story is not None else None
        forbidden = blocked.banned(history) if blocked else None
        return _pick(stepper, options, rng, banned, allowed, previous, forbidden)

    while len(out) < options.length:
        nxt = step()
        out.append(symbols[nxt])
        history.append(nxt)
        repeats.add(nxt)
        context = net.padded_context([*context, nxt])
        stepper.feed(nxt)
        if stepper.window != context:  # a short context completed on the left: start over
            stepper = net.stepper()
            for symbol in context:
                stepper.feed(symbol)
        if options.stop_at_sentence_end and symbols[nxt] in SENTENCE_END:
            if len(out) < options.length:
                follower = step()
                if symbols[follower] in CLOSING:
                    out.append(symbols[follower])
            return out
    if options.whole_messages and PARAGRAPH in model.vocabulary:
        return whole_messages(out)
    return out


def whole_messages(symbols: list[str]) -> list[str]:
    """A reply of a story with paragraphs (a chat's messages) cut at its last message end (the
    paragraph symbol, left out) or sentence end, whichever comes later; as it is when it has
    neither, or when the cut would leave no word."""
    for end in range(len(symbols) - 1, -1, -1):
        if symbols[end] == PARAGRAPH:
            cut = end
        elif symbols[end] in SENTENCE_END:
            cut = end + 1
            while cut < len(symbols) and symbols[cut] in CLOSING:
                cut += 1
        else:
            continue
        if any(any(ch.isalnum() for ch in s) for s in symbols[:cut]):
            return symbols[:cut]
        break
    return symbols


def left_context_table(
    ids: npt.NDArray[Any], vocab_size: int, n_input: int
) -> npt.NDArray[np.int32]:
    """For each symbol, its most frequent ``n_input - 1`` predecessors in ``ids`` (-1 = none)."""
    width = max(0, n_input - 1)
    table = np.full((vocab_size, width), -1, dtype=np.int32)
    if width == 0 or len(ids) <= width:
        return table
    ids = np.asarray(ids, dtype=np.int64)
    positions = np.arange(width, len(ids))
    rows = np.stack([ids[positions]] + [ids[positions - width + k] for k in range(width)], axis=1)
    uniq, first, counts = np.unique(rows, axis=0, return_index=True, return_counts=True)
    # Sort by symbol, then count descending, then first occurrence: first row per symbol wins.
    order = np.lexsort((first, -counts, uniq[:, 0]))
    ranked = uniq[order]
    keep = np.ones(len(ranked), dtype=bool)
    keep[1:] = ranked[1:, 0] != ranked[:-1, 0]
    best = ranked[keep]
    table[best[:, 0]] = best[:, 1:]
    return table
