"""The chat rows' figures (issue 23): do replies differ by prompt, and do they read like chat?

Benchmark code, not product code; pure python / numpy so that ``tests/bench`` checks the
arithmetic on hand-made inputs. A *reply* is the list of generated symbols (the prompt left
out); its *lines* are the reply split on the paragraph symbol ``"\\n"`` (one message of the
reply each; empty ones dropped; the first continues the prompt's message, the last may be cut
by the reply's length).

* :func:`shared_ngrams`: per reply, the share of its generated 4-grams found in any *other*
  reply; the mean over the replies that have a 4-gram (high = every prompt gets the same text).
* :func:`repeated_lines`: the share of all reply lines equal to a line of another reply.
* :func:`story_bigrams`: the share of generated word pairs (the prompt's last symbol and the
  first generated one included) that occur in the training story.
* :func:`verbatim_copies`: the share of reply lines of at least 6 words that are a whole
  training message, verbatim.
* :func:`realism_accuracy`: a multinomial naive Bayes classifier over unigrams and bigrams,
  trained on half of the real and half of the generated lines (as many of each), tested on the
  other halves: 50 % = generated lines cannot be told from real ones, 100 % = always can.
* :class:`MarkovSampler`: what markov-discord does, an order-2 word chain sampling the next
  symbol from the counts it saw after the last two (backing off to the last one, then to all
  symbols, where the context never occurred).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from model import tokenize

PARAGRAPH = "\n"
Line = tuple[str, ...]


def ngrams(symbols: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(symbols[i : i + n]) for i in range(len(symbols) - n + 1)}


def lines_of(symbols: Sequence[str]) -> list[Line]:
    """The reply's messages: the symbols between paragraph symbols, empty ones dropped."""
    lines: list[Line] = []
    current: list[str] = []
    for symbol in [*symbols, PARAGRAPH]:
        if symbol == PARAGRAPH:
            if current:
                lines.append(tuple(current))
            current = []
        else:
            current.append(symbol)
    return lines


def word_count(line: Sequence[str]) -> int:
    return sum(any(ch.isalnum() for ch in symbol) for symbol in line)


def shared_ngram_shares(replies: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Per reply that has an n-gram: the share of its distinct n-grams found in another reply."""
    sets = [ngrams(reply, n) for reply in replies]
    owners: Counter[tuple[str, ...]] = Counter(g for s in sets for g in s)
    return [sum(owners[g] > 1 for g in s) / len(s) for s in sets if s]


def shared_ngrams(replies: Sequence[Sequence[str]], n: int = 4) -> float:
    """Mean over replies of the share of a reply's n-grams that occur in another reply."""
    shares = shared_ngram_shares(replies, n)
    return sum(shares) / len(shares) if shares else 0.0


def repeated_lines(replies: Sequence[Sequence[str]]) -> float:
    """The share of all reply lines that equal a line of another reply."""
    per_reply = [set(lines_of(reply)) for reply in replies]
    owners: Counter[Line] = Counter(line for lines in per_reply for line in lines)
    total = repeated = 0
    for reply in replies:
        for line in lines_of(reply):
            total += 1
            # A line the reply itself holds twice is not "another reply's".
            repeated += owners[line] > 1
    return repeated / total if total else 0.0


def story_bigrams(
    prompts: Sequence[Sequence[str]],
    replies: Sequence[Sequence[str]],
    story: set[tuple[str, ...]],
) -> float:
    """The share of generated word pairs (prompt's last symbol -> first generated one
    included) that are pairs of the story, over all replies."""
    found = total = 0
    for prompt, reply in zip(prompts, replies, strict=True):
        full = [*prompt[-1:], *reply]
        for k in range(1, len(full)):
            total += 1
            found += (full[k - 1], full[k]) in story
    return found / total if total else 0.0


def verbatim_copies(
    replies: Sequence[Sequence[str]], messages: set[Line], min_words: int = 6
) -> tuple[float, int]:
    """(share of the reply lines of >= ``min_words`` words that are a whole message of
    ``messages``, how many such lines there were)."""
    long_lines = [
        line for reply in replies for line in lines_of(reply) if word_count(line) >= min_words
    ]
    copies = sum(line in messages for line in long_lines)
    return (copies / len(long_lines) if long_lines else 0.0), len(long_lines)


def messages_of(text: str) -> list[str]:
    """A history story's messages: one paragraph each (``bot/core/history.story_text``)."""
    return [m.strip() for m in text.split("\n\n") if m.strip()]


def history_slice(messages: Sequence[str], max_symbols: int) -> tuple[list[str], list[str]]:
    """(the first messages whose story has at most ``max_symbols`` symbols, the rest)."""
    total = 0
    for i, message in enumerate(messages):
        # Each message is its symbols and one paragraph symbol between it and the next.
        total += len(tokenize(message)) + (1 if i else 0)
        if total > max_symbols:
            return list(messages[:i]), list(messages[i:])
    return list(messages), []


def held_out_prompts(
    messages: Sequence[Sequence[str]], count: int, seed: int, *, exclude: set[int] | None = None
) -> list[tuple[int, list[str]]]:
    """``count`` seeded (message index, first 2-4 symbols) of tokenized messages that go on
    after their first words, every message at most once."""
    rng = np.random.default_rng(seed)
    taken = set(exclude or ())
    chosen: list[tuple[int, list[str]]] = []
    candidates = [i for i, m in enumerate(messages) if word_count(m) >= 4 and i not in taken]
    for i in rng.permutation(len(candidates)):
        index = candidates[int(i)]
        k = int(rng.integers(2, 5))
        words = list(messages[index][:k])
        if word_count(words) == k:
            chosen.append((index, words))
        if len(chosen) == count:
            break
    return chosen


def _features(line: Sequence[str]) -> list[tuple[str, ...]]:
    # Unigrams, and bigrams with the message's start and end as symbols of their own.
    padded = ["<s>", *line, "</s>"]
    return [(s,) for s in line] + [tuple(padded[i : i + 2]) for i in range(len(padded) - 1)]


class NaiveBayes:
    """Multinomial naive Bayes over unigram + bigram counts, add-one smoothing."""

    def __init__(self) -> None:
        self.log_prior: dict[int, float] = {}
        self.counts: dict[int, Counter[tuple[str, ...]]] = {}
        self.totals: dict[int, int] = {}
        self.vocabulary: set[tuple[str, ...]] = set()

    def fit(self, lines: Sequence[Sequence[str]], labels: Sequence[int]) -> NaiveBayes:
        by_label: dict[int, Counter[tuple[str, ...]]] = defaultdict(Counter)
        docs: Counter[int] = Counter(labels)
        for line, label in zip(lines, labels, strict=True):
            by_label[label].update(_features(line))
        self.counts = dict(by_label)
        self.totals = {label: sum(c.values()) for label, c in self.counts.items()}
        self.vocabulary = {f for c in self.counts.values() for f in c}
        self.log_prior = {label: math.log(n / len(labels)) for label, n in docs.items()}
        return self

    def predict(self, line: Sequence[str]) -> int:
        size = len(self.vocabulary) + 1  # + 1: every feature never seen in training
        best_label, best = 0, -math.inf
        for label in sorted(self.counts):
            counts, total = self.counts[label], self.totals[label]
            score = self.log_prior[label] + sum(
                math.log((counts[f] + 1) / (total + size)) for f in _features(line)
            )
            if score > best:
                best_label, best = label, score
        return best_label


def realism_accuracy(
    real: Sequence[Sequence[str]], generated: Sequence[Sequence[str]], seed: int
) -> tuple[float, int]:
    """(test accuracy of :class:`NaiveBayes` telling generated lines from real ones, test
    lines per side): as many lines of each (the fewer side's count, both shuffled by
    ``seed``), the first half of each to train, the second half to test."""
    rng = np.random.default_rng(seed)
    n = min(len(real), len(generated))
    half = n // 2
    if half == 0:
        raise ValueError("too few lines to train and test on")
    picks = [
        [list(side[int(i)]) for i in rng.permutation(len(side))[:n]] for side in (real, generated)
    ]
    train = [line for side in picks for line in side[:half]]
    labels = [label for label in (0, 1) for _ in range(half)]
    model = NaiveBayes().fit(train, labels)
    test = [(line, label) for label, side in enumerate(picks) for line in side[half : 2 * half]]
    correct = sum(model.predict(line) == label for line, label in test)
    return correct / len(test), half


class MarkovSampler:
    """An order-2 word chain that samples from raw counts (markov-discord's method)."""

    def __init__(self, symbols: Sequence[str]) -> None:
        self.two: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.one: dict[str, Counter[str]] = defaultdict(Counter)
        self.all: Counter[str] = Counter(symbols)
        for a, b, c in zip(symbols, symbols[1:], symbols[2:], strict=False):
            self.two[(a, b)][c] += 1
        for a, b in itertools.pairwise(symbols):
            self.one[a][b] += 1

    def followers(self, context: Sequence[str]) -> Counter[str]:
        if len(context) >= 2 and (context[-2], context[-1]) in self.two:
            return self.two[(context[-2], context[-1])]
        if context and context[-1] in self.one:
            return self.one[context[-1]]
        return self.all

    def continue_prompt(self, prompt: Sequence[str], length: int, seed: int) -> list[str]:
        """``length`` symbols after ``prompt``; words never seen are skipped, as fabulist does."""
        rng = np.random.default_rng(seed)
        context = [s for s in prompt if s in self.all]
        out: list[str] = []
        for _ in range(length):
            counts = self.followers(context)
            symbols = list(counts)
            weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            nxt = symbols[int(rng.choice(len(symbols), p=weights / weights.sum()))]
            context.append(nxt)
            out.append(nxt)
        return out
