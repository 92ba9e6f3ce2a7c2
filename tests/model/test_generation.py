"""Generation runs in numpy and gives the same symbols as Keras; prompts; sampling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from model import GenerationOptions, ModelConfig, TrainedModel, continue_prompt, generate
from model.generation import NumpyLSTM
from model.network import assign_weights, build_network, build_networks, extract_weights
from model.serialization import TrainingFigures
from model.vocabulary import UNKNOWN, Vocabulary
from model.windows import gather
from tests.model.conftest import ARTICLE_PREFIX, four_grams

REPO = Path(__file__).resolve().parents[2]


def _keras_greedy(
    network: keras.Model, model: TrainedModel, prompt: list[str], n: int
) -> list[str]:
    ids = model.vocabulary.encode(prompt)
    out: list[str] = []
    for _ in range(n):
        logits = network.predict_on_batch(np.asarray([ids[-model.config.n_input :]], np.int32))
        ids.append(int(np.argmax(logits[0])))
        out.append(model.vocabulary.symbols[ids[-1]])
    return out


@pytest.mark.parametrize(("layers", "tied"), [(1, False), (2, False), (1, True)])
def test_numpy_forward_matches_keras(story_tokens: list[str], layers: int, tied: bool) -> None:
    vocabulary = Vocabulary.build(story_tokens)
    config = ModelConfig(vocab_size=len(vocabulary), layers=layers, units=24, embedding_dim=8)
    keras.utils.set_random_seed(7)
    network = build_networks(config, tied=tied)[1]
    # Larger random weights than the initializer's, so the comparison is not near zero.
    rng = np.random.default_rng(0)
    network.set_weights(
        [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in network.get_weights()]
    )
    weights = extract_weights(network, config)
    weights["left_context"] = np.full((len(vocabulary), 2), -1, np.int32)
    figures = TrainingFigures(0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)
    model = TrainedModel(config, vocabulary, weights, figures)
    ids = np.asarray(vocabulary.encode(story_tokens), np.int32)
    x, _ = gather(ids, np.arange(len(ids) - 3), 3)
    expected = network.predict_on_batch(x)
    net = NumpyLSTM(model)
    got = np.stack([net.logits(list(row)) for row in x])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    prompt = ["had", "a", "general"]
    # The network's own argmax: no story index here, and the repeat guard off.
    plain = GenerationOptions(no_repeat_ngram=None)
    assert generate(model, prompt, plain) == _keras_greedy(network, model, prompt, 32)
    # The weights load back into a Keras network unchanged (a tied one's output layer into
    # an ordinary Dense layer: the product, so only rounding may differ).
    again = build_network(config)
    assign_weights(again, config, weights)
    if tied:
        assert np.linalg.matrix_rank(weights["dense_kernel"]) == config.embedding_dim
        np.testing.assert_allclose(again.predict_on_batch(x[:5]), expected[:5], atol=1e-5)
    else:
        np.testing.assert_array_equal(again.predict_on_batch(x[:5]), expected[:5])


def test_trained_model_continues_the_story(
    tiny_model: TrainedModel, story_tokens: list[str]
) -> None:
    out = generate(tiny_model, ["had", "a", "general"])
    assert len(out) == 32
    assert out[:17] == ARTICLE_PREFIX
    grams = four_grams(story_tokens)
    full = ["had", "a", "general", *out]
    assert all(tuple(full[i : i + 4]) in grams for i in range(len(full) - 3))
    assert len(generate(tiny_model, ["mouse", "mouse", "mouse"])) == 32


def test_prompt_lengths(tiny_model: TrainedModel) -> None:
    net = NumpyLSTM(tiny_model)
    vocabulary = tiny_model.vocabulary
    # Longer prompts use their last n_input symbols.
    long_prompt = ["long", "ago", ",", "the", "mice", "had", "a", "general"]
    assert generate(tiny_model, long_prompt) == generate(tiny_model, ["had", "a", "general"])
    # Shorter prompts are completed on the left with the story's most frequent predecessors.
    assert vocabulary.decode(net.padded_context(vocabulary.encode(["general"]))) == [
        "had",
        "a",
        "general",
    ]
    assert generate(tiny_model, ["general"])[:2] == ["council", "to"]
    assert generate(tiny_model, ["a", "general"])[:2] == ["council", "to"]
    # "long" opens the story: nothing precedes it, so the short context is used as it is.
    assert vocabulary.decode(net.padded_context(vocabulary.encode(["long"]))) == ["long"]
    assert len(generate(tiny_model, ["long"])) == 32
    assert len(generate(tiny_model, [])) == 32


def test_unknown_words_are_left_out_and_named(tiny_model: TrainedModel) -> None:
    """A prompt with unknown words continues from its known ones (issue 23): "zebra" and
    "dgo" are skipped, the network reads "had a general", and the reply tells which words."""
    known = generate(tiny_model, ["had", "a", "general"])
    reply = continue_prompt(tiny_model, ["had", "zebra", "a", "dgo", "general", "zebra"])
    assert reply.symbols == known and reply.symbols[:17] == ARTICLE_PREFIX
    assert tiny_model.vocabulary.decode(reply.context) == ["had", "a", "general"]
    assert [u.word for u in reply.unknown] == ["zebra", "dgo"]
    dgo = reply.unknown[1]
    assert "dog" not in tiny_model.vocabulary and dgo.suggestions  # close words of the story
    # Fewer known words than n_input: the left-context completion of a short prompt.
    short = continue_prompt(tiny_model, ["general", "zebra"])
    assert short.symbols == generate(tiny_model, ["general"]) and short.symbols[:2] == [
        "council",
        "to",
    ]
    assert [u.word for u in short.unknown] == ["zebra"]
    # A known prompt names nothing.
    assert continue_prompt(tiny_model, ["had", "a", "general"]).unknown == ()


def test_a_prompt_with_no_known_word_continues_like_an_empty_one(
    tiny_model: TrainedModel,
) -> None:
    reply = continue_prompt(tiny_model, ["hate", "mondays"])
    assert reply.context == [] and len(reply.symbols) == 32
    assert reply.symbols == generate(tiny_model, [])
    assert [u.word for u in reply.unknown] == ["hate", "mondays"]


def test_an_unknown_word_outside_the_context_window_is_not_named(
    tiny_model: TrainedModel,
) -> None:
    """Only the last n_input known words are read: "zebra" before them changes nothing."""
    n = tiny_model.config.n_input
    prompt = ["had", "a", "general"][-n:]
    reply = continue_prompt(tiny_model, ["zebra", *prompt])
    assert reply.symbols == generate(tiny_model, prompt) and reply.unknown == ()


def test_sampling_is_seeded_and_top_k_one_is_greedy(tiny_model: TrainedModel) -> None:
    prompt = ["the", "old", "mouse"]
    hot = GenerationOptions(temperature=1.5, seed=11)
    assert generate(tiny_model, prompt, hot) == generate(tiny_model, prompt, hot)
    samples = {
        tuple(generate(tiny_model, prompt, GenerationOptions(temperature=2.0, seed=s)))
        for s in range(5)
    }
    assert len(samples) > 1
    top1 = GenerationOptions(temperature=1.0, top_k=1, seed=3)
    assert generate(tiny_model, prompt, top1) == generate(tiny_model, prompt)
    assert len(generate(tiny_model, prompt, GenerationOptions(length=5))) == 5


def test_stop_at_sentence_end(tiny_model: TrainedModel) -> None:
    out = generate(
        tiny_model, ["had", "a", "general"], GenerationOptions(stop_at_sentence_end=True)
    )
    assert out[-1] == "." and out.count(".") == 1 and len(out) == 17


def test_unknown_symbol_is_never_generated(story_tokens: list[str]) -> None:
    vocabulary = Vocabulary.build(story_tokens, max_size=10)
    config = ModelConfig(vocab_size=10, units=8, embedding_dim=4)
    keras.utils.set_random_seed(1)
    weights = extract_weights(build_network(config), config)
    weights["dense_bias"][vocabulary.id_of(UNKNOWN)] = 100.0  # make <unk> the favourite
    weights["left_context"] = np.full((10, 2), -1, np.int32)
    model = TrainedModel(
        config, vocabulary, weights, TrainingFigures(0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)
    )
    reply = continue_prompt(model, ["zebra", "the", "cat"])  # unknown words map to <unk>
    assert len(reply.symbols) == 32 and UNKNOWN not in reply.symbols
    assert len(reply.context) == 3 and reply.context[0] == vocabulary.id_of(UNKNOWN)
    assert reply.unknown[0].word == "zebra"  # read as <unk>, still named


def test_generation_needs_no_tensorflow(tiny_model: TrainedModel, tmp_path: Path) -> None:
    from model import to_bytes

    path = tmp_path / "m.bin"
    path.write_bytes(to_bytes(tiny_model))
    code = (
        "import sys; from pathlib import Path; from model import from_bytes, generate\n"
        f"m = from_bytes(Path({str(path)!r}).read_bytes())\n"
        "print(' '.join(generate(m, ['had', 'a', 'general'])))\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == generate(tiny_model, ["had", "a", "general"])


def _numpy_nucleus_draw(
    scores: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator
) -> int:
    """Nucleus sampling written with numpy's own ``Generator.choice`` and a stable sort of the
    whole vocabulary: what ``_sample`` must draw, from the same random stream."""
    scaled = scores / temperature
    scaled -= scaled.max()
    p = np.exp(scaled)
    p /= p.sum()
    if top_p < 1.0:
        ranked = np.argsort(-p, kind="stable")
        size = int(np.searchsorted(np.cumsum(p[ranked]), top_p)) + 1
        nucleus = np.zeros_like(p)
        nucleus[ranked[:size]] = p[ranked[:size]]
        p = nucleus / nucleus.sum()
    return int(rng.choice(len(p), p=p))


@pytest.mark.parametrize("vocabulary", [3, 112, 5_000])
def test_sampling_draws_what_numpys_choice_draws(vocabulary: int) -> None:
    """The sampler skips ``Generator.choice``'s checks and ranks only the symbols with a
    probability: the same symbols from the same seeds, and the stream left where numpy
    leaves it, on whole vocabularies and on a few story candidates, with ties."""
    from model.generation import _sample

    cases = np.random.default_rng(vocabulary)
    for case in range(300):
        scores = cases.normal(0, 3, vocabulary)
        if case % 3 == 0:  # a few story candidates: the rest cannot be drawn
            hidden = cases.random(vocabulary) < 0.97
            hidden[cases.integers(vocabulary)] = False
            scores[hidden] = -np.inf
        if case % 5 == 0:  # equal scores: ties broken by id
            scores = np.round(scores)
        temperature = float(cases.choice([0.3, 0.8, 1.5]))
        top_p = float(cases.choice([0.5, 0.9, 1.0]))
        options = GenerationOptions(temperature=temperature, top_p=top_p)
        ours, numpys = np.random.default_rng(case), np.random.default_rng(case)
        drawn = [_sample(scores.copy(), options, ours) for _ in range(4)]
        expected = [
            _numpy_nucleus_draw(scores.copy(), temperature, top_p, numpys) for _ in range(4)
        ]
        assert drawn == expected, (case, temperature, top_p)
        assert ours.random() == numpys.random()


@pytest.mark.parametrize("vocabulary", [112, 5_000])
def test_sampling_among_candidates_draws_what_the_whole_vocabulary_draws(vocabulary: int) -> None:
    """Replies that follow the story draw among its candidates alone (model.generation._pick):
    the same symbols as a draw over the whole vocabulary whose other symbols cannot be drawn,
    with top_k and the nucleus applied. (The normalizing sums can differ in their last bit,
    so a draw could differ where the random number falls within it: none of these 2,400.)"""
    from model.generation import _sample

    cases = np.random.default_rng(vocabulary + 1)
    for case in range(300):
        count = int(cases.integers(1, 40))
        candidates = np.sort(cases.choice(vocabulary, count, replace=False))
        logits = cases.normal(0, 3, count)
        if case % 5 == 0:  # ties: broken by id either way
            logits = np.round(logits)
        whole = np.full(vocabulary, -np.inf)
        whole[candidates] = logits
        options = GenerationOptions(
            temperature=float(cases.choice([0.3, 0.8, 1.5])),
            top_k=[None, 1, 3, 50][case % 4],
            top_p=float(cases.choice([0.5, 0.9, 1.0])),
        )
        among, over_all = np.random.default_rng(case), np.random.default_rng(case)
        drawn = [int(candidates[_sample(logits.copy(), options, among)]) for _ in range(4)]
        expected = [_sample(whole.copy(), options, over_all) for _ in range(4)]
        assert drawn == expected, (case, options)
