"""Continuation quality (issue 11): do continuations read like the story, from any prompt?

For the article's story and each book of ``data/corpora`` the product's model is trained (books
with a held-out split and a time cap) and continued from a fixed list of prompts made of story
words in orders the story never has: 24 hand-written ones for the article's story ("mouse mouse
mouse", "the cat said", ...), 20 seeded random word triples of each book's 300 most frequent
words. Each prompt is continued to 128 symbols, greedily and with Reroll's sampling (temperature
0.8, seed = the prompt's number), and the bench prints per story and decoding:

* **recovery**: the first generated position from which 8 consecutive generated 4-grams
  (the prompt counts as context) are all 4-grams of the story, over the first 32 generated
  symbols; "never" counts as 32. Median and worst over the prompts.
* **bigrams**: the share of generated word pairs (the prompt's last word and the first generated
  one included) that occur in the story.
* **stutter**: the share of generated symbols equal to the one before.
* **loops**: the share of the reply's 4-grams (generated symbols only) already generated earlier.
* **story 4-grams**: the share of generated 4-grams (prompt as context) that are the story's:
  how much is copied (100 % = verbatim passages), for judging the other figures.

Rows: the product's defaults ("now"), the same model without the story index and the repeat
guard ("before": the decoding before issue 11), the order-3 Kneser-Ney Markov chain of
``bench/markov.py`` (greedy = argmax, sampling = p^(1/0.8)) and, on the article's story, the
article's own Listing 12 ("mouse mouse mouse", 32 symbols) as a reference row. Per book also the
held-out perplexity and accuracy of the LSTM against Markov chains of order 2 and 3 built on the
same split, as in ``bench/bench_books.py``.

Then the chat rows (issue 23, ``bench/chat_rows.py``): a history-sized slice of the real chat
corpus ``data/chat`` trained as ``/train source:history`` trains it, 12 chat prompts continued
through the bot's own code path with its defaults, with Reroll's sampling and with a Markov-2
sampler (markov-discord's method), next to real held-out chat: answered prompts, 4-grams and
lines shared across the prompts' replies, story bigrams, whole training messages copied, a
naive Bayes classifier's accuracy at telling reply lines from real messages, and the chat
story's held-out perplexity against Kneser-Ney chains; and the Grimm row: whole Grimm trained
the same way, 4-grams shared across 12 prompts' replies.

Usage: ``.venv/bin/python bench/bench_continuation_quality.py [--quick] [--books jacobs,grimm]
[--seconds S] [--chat | --chat-only] [--model-cache DIR]``. ``--quick``: the article's story and
short book runs, 30 s chat / Grimm training (a few minutes here). ``--chat``: the chat rows and
the Grimm row only; ``--chat-only``: the chat rows alone (the chat story trains up to the bot's
600 s). ``--model-cache DIR``: the chat and Grimm models are saved in DIR and reused as they are
by later runs (to compare decodings on one trained model; empty DIR to retrain).
The machine may be shared: the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_books import load_line, machine_line, markov_baselines  # noqa: E402
from bench.chat_rows import chat_section, grimm_section  # noqa: E402
from bench.markov import KneserNeyMarkov  # noqa: E402
from model import GenerationOptions, TrainedModel, TrainingConfig, generate, tokenize  # noqa: E402
from model.generation import NumpyLSTM  # noqa: E402
from model.tokenizer import detokenize  # noqa: E402
from model.vocabulary import UNKNOWN  # noqa: E402

ARTICLE = ROOT / "data" / "belling-the-cat.txt"
CORPORA = ROOT / "data" / "corpora"
BOOKS = (
    ("jacobs", "fables-of-aesop-jacobs.txt", 6, 120.0),
    ("vernon-jones", "aesops-fables-vernon-jones.txt", 5, 150.0),
    ("grimm", "grimms-fairy-tales-taylor-edwardes.txt", 5, 240.0),
)
QUICK_EPOCHS, QUICK_SECONDS = 2, 20.0
VOCAB_CAP = 10_000
ARTICLE_PROMPTS = (
    "mouse mouse mouse",
    "the cat said",
    "a young cat",
    "bell the mouse",
    "enemy enemy enemy",
    "the mice said",
    "cat cat cat",
    "the old cat",
    "who is to",
    "mouse said he",
    "the bell said",
    "a small cat",
    "the neck of",
    "nobody spoke ,",
    "the enemy said",
    "mice looked at",
    "escape from the",
    "general applause mouse",
    "a ribbon round",
    "she was a",
    "they could bell",
    "the proposal of",
    "young mouse bell",
    "impossible remedies .",
)
# The article's Listing 12: its model continuing "mouse mouse mouse" (32 symbols).
LISTING_12_TEXT = (
    ", neighbourhood and could receive a outwit always the neck of the cat . some said this , "
    "and some said that but at last a young mouse got up and said"
)
LISTING_12 = LISTING_12_TEXT.split(" ")
LENGTH, RECOVERY_SPAN, RECOVERY_RUN = 128, 32, 8
REROLL_TEMPERATURE = 0.8


@dataclass(frozen=True)
class Quality:
    recovery: int  # RECOVERY_SPAN = never
    bigrams: float
    stutter: float
    loops: float
    copied: float  # share of the reply's 4-grams that are the story's


def grams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def quality(
    prompt: Sequence[str], out: Sequence[str], four: set[tuple[str, ...]], two: set[tuple[str, ...]]
) -> Quality:
    full = [*prompt, *out]
    start = len(prompt)
    # known[j]: the 4-gram ending at generated symbol j is one of the story's.
    known = [
        j + start >= 3 and tuple(full[j + start - 3 : j + start + 1]) in four
        for j in range(len(out))
    ]
    recovery = RECOVERY_SPAN
    for j in range(min(len(out), RECOVERY_SPAN) - RECOVERY_RUN + 1):
        if all(known[j : j + RECOVERY_RUN]):
            recovery = j
            break
    pairs = [(full[k - 1], full[k]) for k in range(max(1, start), len(full))]
    bigrams = sum(p in two for p in pairs) / max(1, len(pairs))
    stutter = sum(full[k] == full[k - 1] for k in range(max(1, start), len(full))) / max(
        1, len(out)
    )
    seen: set[tuple[str, ...]] = set()
    repeats = total = 0
    for j in range(3, len(out)):
        gram = tuple(out[j - 3 : j + 1])
        total += 1
        repeats += gram in seen
        seen.add(gram)
    copied = sum(known) / max(1, len(known))
    return Quality(recovery, bigrams, stutter, repeats / max(1, total), copied)


def summary(rows: list[Quality]) -> list[str]:
    rec = [q.recovery for q in rows]
    worst = max(rec)
    return [
        f"{statistics.median(rec):g}",
        "never" if worst >= RECOVERY_SPAN else str(worst),
        f"{statistics.mean(q.bigrams for q in rows):.1%}",
        f"{statistics.mean(q.stutter for q in rows):.1%}",
        f"{statistics.mean(q.loops for q in rows):.1%}",
        f"{statistics.mean(q.copied for q in rows):.0%}",
    ]


def book_prompts(tokens: list[str], count: int, seed: int) -> list[list[str]]:
    """Seeded triples of frequent words that never occur in this order in the story."""
    counts: dict[str, int] = {}
    for t in tokens:
        if t.isalpha():
            counts[t] = counts.get(t, 0) + 1
    common = sorted(counts, key=lambda w: (-counts[w], w))[:300]
    trigrams = grams(tokens, 3)
    rng = np.random.default_rng(seed)
    prompts: list[list[str]] = []
    while len(prompts) < count:
        triple = [common[int(i)] for i in rng.integers(0, len(common), 3)]
        if tuple(triple) not in trigrams and triple not in prompts:
            prompts.append(triple)
    return prompts


Decoder = Callable[[list[str], int], list[str]]


def lstm_decoder(model: TrainedModel, options: GenerationOptions) -> Decoder:
    net = NumpyLSTM(model)

    def run(prompt: list[str], index: int) -> list[str]:
        seeded = GenerationOptions(**{**options.__dict__, "seed": index})
        return generate(model, prompt, seeded, network=net)

    return run


def markov_decoder(tokens: list[str], model: TrainedModel, temperature: float) -> Decoder:
    vocabulary = model.vocabulary
    ids = vocabulary.encode(tokens)
    chain = KneserNeyMarkov(3, len(vocabulary)).fit(
        [ids[i : i + 3] for i in range(len(ids) - 3)], ids[3:]
    )
    unknown = vocabulary.id_of(UNKNOWN) if vocabulary.has_unknown else None

    def run(prompt: list[str], index: int) -> list[str]:
        rng = np.random.default_rng(index)
        context = vocabulary.encode(prompt)
        out: list[str] = []
        for _ in range(LENGTH):
            p = chain.distribution(context[-3:])
            if unknown is not None:
                p[unknown] = 0.0
            if temperature <= 0:
                nxt = int(np.argmax(p))
            else:
                q = p ** (1.0 / temperature)
                nxt = int(rng.choice(len(q), p=q / q.sum()))
            context.append(nxt)
            out.append(vocabulary.symbols[nxt])
        return out

    return run


def evaluate(
    decoder: Decoder,
    prompts: list[list[str]],
    four: set[tuple[str, ...]],
    two: set[tuple[str, ...]],
) -> tuple[list[Quality], list[str]]:
    results, samples = [], []
    for i, prompt in enumerate(prompts):
        out = decoder(prompt, i)
        results.append(quality(prompt, out, four, two))
        samples.append(detokenize([*prompt, *out[:RECOVERY_SPAN]]).replace("\n", " ¶ "))
    return results, samples


def train(tokens: list[str], epochs: int, seconds: float) -> TrainedModel:
    from model.training import train_model

    return train_model(
        tokens,
        None,
        TrainingConfig(seed=1, max_epochs=epochs, max_seconds=seconds),
        vocabulary_max_size=VOCAB_CAP + 1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the article + short book runs")
    parser.add_argument("--books", default=",".join(b[0] for b in BOOKS))
    parser.add_argument("--seconds", type=float, default=None, help="training cap per book")
    parser.add_argument("--samples", action="store_true", help="print the first 3 continuations")
    parser.add_argument("--chat-only", action="store_true", help="the chat rows alone")
    parser.add_argument(
        "--chat", action="store_true", help="the chat rows and the Grimm row (no story rows)"
    )
    parser.add_argument(
        "--model-cache",
        type=Path,
        default=None,
        help="folder keeping the chat / Grimm models: trained once, reused by later runs",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"# bench_continuation_quality {datetime.date.today().isoformat()} — {machine_line()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"start: {load_line()}", flush=True)
    cache = args.model_cache
    if not (args.chat or args.chat_only):
        story_rows(args)
    chat_section(args.quick, None if cache is None else cache / "chat.fabulist")
    if not args.chat_only:
        grimm_section(args.quick, None if cache is None else cache / "grimm.fabulist")
    print(f"end: {load_line()}; bench wall time {time.perf_counter() - started:.0f} s")


def story_rows(args: argparse.Namespace) -> None:
    """The article's story and the books (issue 11)."""
    wanted = {k.strip() for k in args.books.split(",") if k.strip()}
    stories: list[tuple[str, list[str], list[list[str]], int, float]] = [
        (
            "article",
            tokenize(ARTICLE.read_text(encoding="utf-8")),
            [p.split() for p in ARTICLE_PROMPTS],
            500,
            60.0,
        )
    ]
    for key, filename, epochs, seconds in BOOKS:
        if key in wanted:
            tokens = tokenize((CORPORA / filename).read_text(encoding="utf-8"))
            if args.quick:
                epochs, seconds = QUICK_EPOCHS, QUICK_SECONDS
            stories.append(
                (key, tokens, book_prompts(tokens, 20, seed=11), epochs, args.seconds or seconds)
            )

    header = [
        "story",
        "decoding",
        "rows",
        "recovery median",
        "worst",
        "bigrams",
        "stutter",
        "loops",
        "story 4-grams",
    ]
    table: list[list[str]] = []
    perplexity: list[list[str]] = []
    notes: list[str] = []
    for key, tokens, prompts, epochs, seconds in stories:
        t0 = time.perf_counter()
        model = train(tokens, epochs, seconds)
        f = model.figures
        print(f"trained {key}: {f.epochs} epochs ({f.stopped}), {f.seconds:.0f} s", flush=True)
        notes.append(
            f"{key}: {f.symbols:,} symbols, n_input {model.config.n_input}, {f.epochs} epochs"
            f" ({f.stopped}), {f.seconds:.0f} s training"
        )
        four, two = grams(tokens, 4), grams(tokens, 2)
        greedy = GenerationOptions(length=LENGTH)
        sampled = GenerationOptions(length=LENGTH, temperature=REROLL_TEMPERATURE)
        old = {"follow_story": False, "no_repeat_ngram": None, "top_p": None}
        decoders: list[tuple[str, Decoder]] = [
            ("greedy, now", lstm_decoder(model, greedy)),
            ("greedy, before", lstm_decoder(model, GenerationOptions(length=LENGTH, **old))),
            ("greedy, Markov-3", markov_decoder(tokens, model, 0.0)),
            ("T 0.8, now", lstm_decoder(model, sampled)),
            (
                "T 0.8, before",
                lstm_decoder(
                    model, GenerationOptions(length=LENGTH, temperature=REROLL_TEMPERATURE, **old)
                ),
            ),
            ("T 0.8, Markov-3", markov_decoder(tokens, model, REROLL_TEMPERATURE)),
        ]
        for name, decoder in decoders:
            results, samples = evaluate(decoder, prompts, four, two)
            table.append([key, name, str(len(results)), *summary(results)])
            print("row: | " + " | ".join(table[-1]) + " |", flush=True)
            if args.samples:
                notes += [f"  {key} / {name}: {s}" for s in samples[:3]]
        if key == "article":
            ref = quality(["mouse"] * 3, LISTING_12, four, two)
            table.append([key, "article's Listing 12", "1", *summary([ref])])
        if f.val_perplexity is not None:
            chains = markov_baselines(tokens, VOCAB_CAP, model.config.n_input, f.to_dict())
            perplexity.append(
                [key, str(model.config.n_input), f"{f.val_perplexity:.1f}", f"{f.val_accuracy:.3f}"]
                + [f"{c.score.perplexity:.1f} / {c.score.accuracy:.3f}" for c in chains]
                + [f"{f.val_perplexity / chains[1].score.perplexity:.2f}"]
            )
        notes.append(f"{key}: bench {time.perf_counter() - t0:.0f} s")
        print(*notes[-1:], *(perplexity[-1:] if f.val_perplexity is not None else []), flush=True)

    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    if perplexity:
        print()
        head = [
            "book",
            "n_input",
            "LSTM ppl",
            "LSTM acc",
            "Markov-2 ppl / acc",
            "Markov-3 ppl / acc",
            "LSTM / M3",
        ]
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for row in perplexity:
            print("| " + " | ".join(row) + " |")
    print()
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
