"""StoryService: the one object the adapters (CLI, console, Discord cogs) call.

It validates every request before any work starts, stores stories, queues training jobs (one per
channel, a global FIFO queue in front of a fixed pool of spawned worker processes), reports
progress on the event loop, activates finished models in one transaction, and answers
``/continue`` from an LRU cache of numpy models in a thread executor. This module and everything
it imports are TensorFlow-free; only the worker processes import TensorFlow.

Model cache: bounded both by count (``[cache] models``) and by memory (``[cache] megabytes``);
each model's size is measured from its arrays at load, counting its first-step table fully
built (see :func:`model_cache_bytes`). A model larger than the byte bound answers but is not
kept. ``StoryService.cache_stats`` reports the cache's models and bytes.

Restart policy: on ``start`` every job that a process which is gone left queued or running is
marked ``interrupted`` with a message telling the member to train again; nothing is re-queued,
so a story that crashes training cannot crash-loop the bot. Jobs of a live process (the running
bot, seen from an offline ``python -m bot status``) are left alone: each job records its owner
process (see ``bot.owner``). Models load lazily on first use.

Cancels: a cancel or /forget that arrives before the worker has the job is never lost: ``_run``
looks before each hand-over, and the pool and the worker remember an early cancel.

Console/CLI channels: ``console_channel(name)`` maps a channel name to a stable id (the first 6
bytes of SHA-256 of ``console:<name>``, so below 2**47, far below any real Discord snowflake from
after 2015) with ``guild_id=None``; the name is stored in ``channels.name``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import inspect
import logging
import math
import sys
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from bot.config import Config
from bot.display import format_bytes as _size
from bot.errors import (
    Busy,
    CoolingDown,
    InvalidOption,
    InvalidUpload,
    NoModel,
    NotAllowed,
    NotFound,
    QueueFull,
    StorageError,
    UnknownWords,
    UserError,
)
from bot.export import (
    ChannelExport,
    ExportedStory,
    ExportLimits,
    InvalidExport,
    export_filename,
    looks_like_export,
    read_export,
    write_export,
)
from bot.storage import (
    ImportedStory,
    JobRecord,
    ModelRecord,
    NewModel,
    NewStory,
    StoryRecord,
    StoryStore,
    now_iso,
)
from bot.worker import TrainingOutcome, TrainingPool, TrainingTask
from model import (
    GenerationOptions,
    ModelConfig,
    ModelError,
    NumpyLSTM,
    TrainedModel,
    TrainingConfig,
    TrainingFigures,
    UnknownWordsError,
    detokenize,
    from_bytes,
    generate,
    tokenize,
)
from model.config import MAX_N_INPUT

logger = logging.getLogger(__name__)

MAX_SEED = 2**31 - 1
MAX_TOP_K = 10_000
MAX_PROMPT_CHARS = 4_000
NGRAM = 4
INTERRUPTED_MESSAGE = (
    "The bot restarted while this training was queued or running.{kept} "
    "Upload the story again to train it."
)
SHUTDOWN_MESSAGE = "The bot shut down during this training.{kept}"
KEPT = " The previous model is still active."
_BINARY_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"PK\x03\x04": "a zip archive",
    b"\x7fELF": "an executable program",
    b"MZ": "a Windows program",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"SQLite format 3": "an SQLite database",
}
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v")


# -- public value types ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelRef:
    guild_id: int | None
    channel_id: int
    name: str | None = None  # stored for display (console channels, Discord channel names)


@dataclass(frozen=True)
class Member:
    user_id: int
    display_name: str
    is_admin: bool  # may train, forget, remove stories, roll back, cancel others' jobs


@dataclass(frozen=True)
class TrainOptions:
    layers: int | None = None
    n_input: int | None = None
    seed: int | None = None
    max_seconds: float | None = None
    mode: Literal["replace", "append"] = "replace"


@dataclass(frozen=True)
class ContinueOptions:
    length: int | None = None
    temperature: float = 0.0
    seed: int | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class JobProgress:
    job_id: int
    state: str  # queued | running | cancelling | done | failed | cancelled | interrupted
    epoch: int
    max_epochs: int
    loss: float | None
    accuracy: float | None
    learnable_accuracy: float | None
    eta_seconds: float | None
    elapsed_seconds: float
    queue_position: int | None
    val_accuracy: float | None = None
    error: str | None = None
    reason: str | None = None  # why the bot queued it itself (e.g. retraining after a removal)


@dataclass(frozen=True)
class TrainingJob:
    job_id: int
    channel: ChannelRef
    state: str
    queue_position: int | None
    story_id: int | None
    story_ids: tuple[int, ...]
    requested_by: int | None


@dataclass(frozen=True)
class JobResult:
    job_id: int
    state: str  # done | failed | cancelled | interrupted
    error: str | None
    model_version: int | None
    figures: TrainingFigures | None
    imported: bool = False  # the "job" was an import of an export file, not a training


@dataclass(frozen=True)
class EndedJob:
    """An ended job and what its progress message should now show."""

    channel: ChannelRef
    filename: str | None  # of the job's (last) story; None if it was removed since
    result: JobResult
    # the progress message an adapter recorded and has not yet updated, and its channel
    message_id: int | None
    message_channel_id: int | None


@dataclass(frozen=True)
class Continuation:
    prompt_symbols: list[str]
    symbols: list[str]
    text: str
    model_version: int
    original_share: float | None  # generated 4-grams found verbatim in the model's stories


@dataclass(frozen=True)
class StoryCard:
    channel: ChannelRef
    has_model: bool
    model_version: int | None
    story_filename: str | None
    story_uploader: str | None
    story_uploaded_at: str | None
    stories: int  # stories the active model learned
    symbols: int | None
    vocabulary_size: int | None
    vocabulary_covered_share: float | None
    learnable_accuracy: float | None
    accuracy: float | None
    val_accuracy: float | None
    val_perplexity: float | None
    epochs: int | None
    training_seconds: float | None
    trained_at: str | None
    job: JobProgress | None  # queued or running training
    last_job: JobResult | None  # the latest finished job (to show a failure)
    notice: str | None = None  # e.g. "retraining after story #3 (x.txt) was removed"
    vocabulary_cap: int | None = None  # training.vocabulary_max_size when the model was trained


@dataclass(frozen=True)
class StoryInfo:
    story_id: int
    filename: str
    uploader_id: int | None
    uploader_name: str | None
    symbols: int
    created_at: str


@dataclass(frozen=True)
class ModelVersion:
    version: int
    active: bool
    created_at: str
    story_ids: tuple[int, ...]
    learnable_accuracy: float | None
    epochs: int | None


@dataclass(frozen=True)
class StoryRemoval:
    story_id: int
    filename: str
    deleted_versions: tuple[int, ...]  # every model version trained on the story
    active_version: int | None  # the version answering now (an older kept one), or None
    retraining: TrainingJob | None  # queued on the remaining stories, or None

    def describe(self) -> str:
        """Plain-text summary for any adapter."""
        parts = [f"Removed story #{self.story_id} ({self.filename})."]
        if self.deleted_versions:
            listed = ", ".join(f"v{v}" for v in self.deleted_versions)
            parts.append(f"Deleted the model versions trained on it: {listed}.")
        if self.active_version is not None:
            parts.append(f"Version {self.active_version} answers now.")
        elif self.deleted_versions:
            parts.append("No model answers until a new one is trained.")
        if self.retraining is not None:
            parts.append(
                f"Retraining on the remaining stories (job #{self.retraining.job_id}) is "
                + ("running." if self.retraining.state == "running" else "queued.")
            )
        return " ".join(parts)


@dataclass(frozen=True)
class ImportResult:
    job_id: int
    model_version: int
    story_ids: tuple[int, ...]
    source_channel: str | None
    exported_at: str
    figures: TrainingFigures

    def describe(self) -> str:
        source = f" from #{self.source_channel}" if self.source_channel else ""
        count = len(self.story_ids)
        return (
            f"Imported {count} stor{'y' if count == 1 else 'ies'} and a model{source} "
            f"(exported {self.exported_at}); it is now version {self.model_version}."
        )


def console_channel(name: str) -> ChannelRef:
    """A stable channel for the CLI/console (see the module docstring)."""
    digest = hashlib.sha256(f"console:{name}".encode()).digest()
    return ChannelRef(guild_id=None, channel_id=int.from_bytes(digest[:6], "big") >> 1, name=name)


# -- upload checks (pure functions, run in a thread for large files) ---------------------------


@dataclass(frozen=True)
class PreparedStory:
    text: str
    encoding: str
    sha256: str
    symbols: int
    vocabulary_size: int


def decode_story(data: bytes) -> tuple[str, str]:
    """Bytes -> (text, encoding). UTF-8 with or without BOM, UTF-16 with BOM; else InvalidUpload."""
    if not data:
        raise InvalidUpload("The file is empty.")
    kind = next((name for magic, name in _BINARY_MAGIC.items() if data.startswith(magic)), None)
    if data.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8-sig", data
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, body = "utf-16", data
    else:
        encoding, body = "utf-8", data
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        if kind is not None or b"\x00" in data[:4096]:
            raise InvalidUpload(
                f"This looks like {kind or 'a binary file'}, not a text story. "
                "Upload a plain .txt file."
            ) from None
        raise InvalidUpload(
            "The file is not UTF-8 text (it may be Latin-1 or Windows-1252). "
            "Save it as UTF-8 and upload it again."
        ) from None
    bad = next(
        (ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS),
        None,
    )
    if bad is not None:
        if kind is not None:
            raise InvalidUpload(f"This looks like {kind}, not a text story.")
        raise InvalidUpload(
            f"The file contains a control character (U+{ord(bad):04X}"
            f"{', NUL' if bad == chr(0) else ''}), so it is not a plain text story."
        )
    if not text.strip().lstrip("\ufeff"):
        raise InvalidUpload("The file has no text in it.")
    return text, encoding.removesuffix("-sig") + ("-bom" if encoding == "utf-8-sig" else "")


def prepare_story(data: bytes, *, n_input: int, max_symbols: int) -> PreparedStory:
    text, encoding = decode_story(data)
    tokens = tokenize(text)
    if len(tokens) < n_input + 1:
        raise InvalidUpload(
            f"The story is too short: {len(tokens)} words and punctuation marks; "
            f"at least {n_input + 1} are needed."
        )
    if len(tokens) > max_symbols:
        raise InvalidUpload(
            f"The story is too long: {len(tokens):,} words and punctuation marks; "
            f"the limit is {max_symbols:,}."
        )
    distinct = len(set(tokens))
    if distinct < 2:
        raise InvalidUpload("The story repeats a single word; it needs at least two different.")
    return PreparedStory(
        text=text,
        encoding=encoding,
        sha256=hashlib.sha256(data).hexdigest(),
        symbols=len(tokens),
        vocabulary_size=distinct,
    )


def clean_filename(filename: str) -> str:
    """A display name only (never used as a path): last path part, no control characters."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return (name or "story.txt")[:100]


# -- cached models -----------------------------------------------------------------------------


MIB = 1 << 20
# Python objects around each word's first-step entry in NumpyLSTM's table, measured with
# tracemalloc on CPython 3.11 (~420 bytes a word at 1 layer): per layer two ndarray headers
# (112 bytes each) and an (h, c) tuple (56); per word the list (88), the int key (28) and a
# dict slot at the table's worst load factor (64).
_FIRST_STEP_LAYER_OVERHEAD = 2 * 112 + 56
_FIRST_STEP_WORD_OVERHEAD = 88 + 28 + 64
_INT_BYTES = 28  # an int object above the 256 CPython keeps shared
# The Python objects around a model's arrays (the entry, TrainedModel, its config and figures,
# ndarray headers): ~5 KB measured with tracemalloc, whatever the model's size.
_MODEL_OVERHEAD = 8 * 1024


@dataclass(frozen=True)
class CacheStats:
    """The model cache now: ``models`` cached taking ``bytes`` (see :func:`model_cache_bytes`)."""

    models: int
    bytes: int
    max_models: int
    max_bytes: int
    channels: tuple[int, ...] = ()  # the cached channels' ids, least recently used first


@dataclass
class _CachedModel:
    model_id: int
    version: int
    model: TrainedModel
    network: NumpyLSTM
    ngrams: npt.NDArray[np.uint64]  # sorted unique 4-gram codes of the model's stories
    index: dict[str, int]  # symbol -> id, built once per model
    nbytes: int = 0  # model_cache_bytes(), set once at load: it already counts the table's growth


def first_step_table_bytes(config: ModelConfig) -> int:
    """NumpyLSTM's per-word first-step table once every word has been a context's first word.

    The table fills lazily (a word's entry on its first use as a context's first symbol) and is
    never emptied, so the cache counts it fully built from the start: the bound holds however
    long a model stays cached, at the price of over-counting models that use few words.
    """
    per_layer = 2 * 4 * config.units + _FIRST_STEP_LAYER_OVERHEAD  # float32 h and c
    return config.vocab_size * (config.layers * per_layer + _FIRST_STEP_WORD_OVERHEAD)


def _array_bytes(arrays: Sequence[npt.NDArray[Any]]) -> int:
    # NumpyLSTM keeps views of the stored weights when the dtype already matches: count each
    # buffer once (by its start address), and the copies it makes (left_context as int64) too.
    sizes: dict[int, int] = {}
    for array in arrays:
        address = int(array.__array_interface__["data"][0])
        sizes[address] = max(sizes.get(address, 0), int(array.nbytes))
    return sum(sizes.values())


def model_cache_bytes(
    model: TrainedModel,
    network: NumpyLSTM,
    ngrams: npt.NDArray[np.uint64],
    index: dict[str, int],
) -> int:
    """What one cached model keeps in memory, in bytes.

    Exact for the arrays (the weights' buffers, the network's own copies, the 4-gram index);
    the first-step table by :func:`first_step_table_bytes`; the vocabulary as its symbols
    tuple, each symbol string, and two symbol -> id dicts (the Vocabulary's and ``index``) as
    large as ``index`` (``sys.getsizeof``, which counts a dict's table but not its keys or
    values) with their int ids (28 bytes each; the strings are shared with the tuple); plus a
    fixed 8 KiB for the Python objects around the arrays. Checked against tracemalloc in
    tests/service/test_model_cache.py (within a few percent at load and with a full table).
    """
    arrays: list[npt.NDArray[Any]] = [*model.weights.values(), ngrams]
    arrays += [network.embedding, network.dense_kernel, network.dense_bias, network.left_context]
    for layer in network.layers:
        arrays += list(layer)
    symbols = model.vocabulary.symbols
    vocabulary = sys.getsizeof(symbols) + sum(sys.getsizeof(symbol) for symbol in symbols)
    vocabulary += 2 * (sys.getsizeof(index) + _INT_BYTES * len(index))
    table = first_step_table_bytes(model.config)
    return _array_bytes(arrays) + table + vocabulary + _MODEL_OVERHEAD


def _ngram_codes(ids: npt.NDArray[np.int64], base: int) -> npt.NDArray[np.uint64]:
    if len(ids) < NGRAM:
        return np.zeros(0, dtype=np.uint64)
    values = ids.astype(np.uint64)
    codes = np.zeros(len(ids) - NGRAM + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wraps only for huge vocabularies: a rare false match
        for k in range(NGRAM):
            codes = codes * np.uint64(base) + values[k : len(values) - NGRAM + 1 + k]
    return codes


def _symbol_ids(index: dict[str, int], symbols: Sequence[str]) -> npt.NDArray[np.int64]:
    missing = len(index)
    return np.fromiter((index.get(s, missing) for s in symbols), dtype=np.int64, count=len(symbols))


def _load_model(model_id: int, version: int, blob: bytes, texts: Sequence[str]) -> _CachedModel:
    model = from_bytes(blob)
    index = {symbol: i for i, symbol in enumerate(model.vocabulary.symbols)}
    codes: list[npt.NDArray[np.uint64]] = []
    for text in texts:
        # Per story: a 4-gram never spans two stories.
        codes.append(_ngram_codes(_symbol_ids(index, tokenize(text)), len(index) + 1))
    ngrams = np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.uint64)
    network = NumpyLSTM(model)
    size = model_cache_bytes(model, network, ngrams, index)
    return _CachedModel(model_id, version, model, network, ngrams, index, size)


def _generate(
    entry: _CachedModel, prompt: list[str], options: GenerationOptions
) -> tuple[list[str], float | None]:
    symbols = generate(entry.model, prompt, options, network=entry.network)
    base = len(entry.model.vocabulary) + 1
    codes = _ngram_codes(_symbol_ids(entry.index, [*prompt, *symbols]), base)
    # Only the 4-grams that contain at least one generated symbol.
    generated = codes[max(0, len(prompt) - NGRAM + 1) :]
    if len(generated) == 0 or len(entry.ngrams) == 0:
        return symbols, None if len(generated) == 0 else 0.0
    positions = np.searchsorted(entry.ngrams, generated)
    positions = np.minimum(positions, len(entry.ngrams) - 1)
    found = int(np.count_nonzero(entry.ngrams[positions] == generated))
    return symbols, found / len(generated)


# -- jobs --------------------------------------------------------------------------------------

ProgressCallback = Callable[[JobProgress], Awaitable[None] | None]


class _Subscriber:
    """Delivers progress to one callback, coalescing while an awaitable callback is busy."""

    def __init__(self, callback: ProgressCallback, tasks: set[asyncio.Task[None]]) -> None:
        self._callback = callback
        self._tasks = tasks
        self._pending: JobProgress | None = None
        self._task: asyncio.Task[None] | None = None

    def deliver(self, progress: JobProgress) -> None:
        if self._task is not None and not self._task.done():
            self._pending = progress  # only the newest matters; the final one always arrives
            return
        try:
            result = self._callback(progress)
        except Exception:
            logger.exception("progress callback failed")
            return
        if inspect.isawaitable(result):
            self._task = asyncio.ensure_future(self._drain(result))
            self._tasks.add(self._task)
            self._task.add_done_callback(self._tasks.discard)

    async def _drain(self, first: Awaitable[None]) -> None:
        awaitable: Awaitable[None] | None = first
        while awaitable is not None:
            try:
                await awaitable
            except Exception:
                logger.exception("progress callback failed")
            awaitable = None
            if self._pending is not None:
                progress, self._pending = self._pending, None
                try:
                    result = self._callback(progress)
                except Exception:
                    logger.exception("progress callback failed")
                    continue
                if inspect.isawaitable(result):
                    awaitable = result


@dataclass
class _Job:
    job_id: int
    channel: ChannelRef
    requested_by: int | None
    story_ids: tuple[int, ...]
    options: dict[str, Any]  # the job's stored options: "model", "training", TrainOptions fields
    result: asyncio.Future[JobResult]
    state: str = "queued"
    progress: dict[str, Any] | None = None
    started: float | None = None
    subscribers: list[_Subscriber] = field(default_factory=list)
    cancel_requested: bool = False
    discarded: str | None = None  # set when the outcome must not touch the database
    last_saved: float = 0.0


class StoryService:
    def __init__(self, config: Config, store: StoryStore, pool: TrainingPool | None = None) -> None:
        self.config = config
        self.store = store
        self._owns_pool = pool is None
        self.pool = pool if pool is not None else TrainingPool(config.workers.count)
        self._executor = ThreadPoolExecutor(
            max_workers=config.workers.generation_threads, thread_name_prefix="fabulist-gen"
        )
        self._cache: OrderedDict[int, _CachedModel] = OrderedDict()
        self._loading: dict[int, asyncio.Future[_CachedModel]] = {}
        self._jobs: dict[int, _Job] = {}
        self._by_channel: dict[int, _Job] = {}
        self._queue: deque[_Job] = deque()
        self._running: set[int] = set()
        self._reserved: set[int] = set()
        self._cooldowns: dict[int, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, warm_workers: bool = True) -> None:
        """Mark the open jobs of processes that are gone as interrupted; optionally start workers.

        A live process's jobs (the running bot's, seen from an offline command) are left alone:
        see ``bot.owner``.
        """
        if self.store.read_only:  # reading commands only: every write would be refused
            if warm_workers:
                await self.pool.start()
            return
        stale = await self.store.interrupt_orphaned_jobs(
            INTERRUPTED_MESSAGE.format(kept=""), INTERRUPTED_MESSAGE.format(kept=KEPT)
        )
        for job in stale:
            logger.warning(
                "job %d (channel %d) was %s: interrupted", job.id, job.channel_id, job.state
            )
        if warm_workers:
            await self.pool.start()

    async def close(self) -> None:
        """Interrupt open jobs, stop owned workers and executors; never blocks the loop."""
        self._closing = True
        for job in list(self._jobs.values()):
            job.discarded = "interrupted"
            message = SHUTDOWN_MESSAGE.format(kept="")
            with contextlib.suppress(Exception):
                message = SHUTDOWN_MESSAGE.format(kept=await self._kept(job.channel))
                await self.store.finish_job(job.job_id, "interrupted", message)
            self._settle(job, JobResult(job.job_id, "interrupted", message, None, None))
        self._queue.clear()
        if self._owns_pool:
            await self.pool.close()
        else:
            for job_id in list(self._running):
                await self.pool.cancel(job_id)
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        for task in list(self._tasks):
            task.cancel()

    # -- validation --------------------------------------------------------------------------

    @property
    def export_limits(self) -> ExportLimits:
        limits = self.config.limits
        return ExportLimits(story_bytes=limits.story_bytes, stories=limits.stories_per_channel)

    def upload_limit(self, filename: str | None = None) -> int:
        """The most bytes to download for an upload: an export file (by name) may be larger."""
        if filename is not None and filename.lower().endswith((".zip", ".fabulist")):
            return max(self.config.limits.story_bytes, self.export_limits.file_bytes)
        return self.config.limits.story_bytes

    def check_upload_size(self, size: int, filename: str | None = None) -> None:
        """Reject by the attachment's declared size, before downloading it.

        With ``filename``, an export file (``.zip``) gets the export limit instead of the story's.
        """
        if size <= 0:
            raise InvalidUpload("The file is empty.")
        limit = self.upload_limit(filename)
        if size > limit:
            raise InvalidUpload(
                f"The file is {_size(size)}; the limit is {_size(limit)}. Upload a shorter story."
            )

    def _check_train_options(self, options: TrainOptions) -> tuple[ModelConfig, TrainingConfig]:
        defaults = self.config.training
        layers = defaults.layers if options.layers is None else options.layers
        n_input = defaults.n_input if options.n_input is None else options.n_input
        _check_int("layers", layers, 1, 2)
        _check_int("n_input", n_input, 1, MAX_N_INPUT)
        if options.seed is not None:
            _check_int("seed", options.seed, 0, MAX_SEED)
        max_seconds = defaults.max_seconds
        if options.max_seconds is not None:
            _check_float("max_seconds", options.max_seconds, 1, defaults.max_seconds)
            max_seconds = float(options.max_seconds)
        if options.mode not in ("replace", "append"):
            raise InvalidOption("mode must be replace or append.")
        training: dict[str, Any] = {
            "max_epochs": defaults.max_epochs,
            "max_seconds": max_seconds,
            "seed": options.seed,
        }
        for name in ("batch_size", "learning_rate", "optimizer"):
            if getattr(defaults, name) is not None:
                training[name] = getattr(defaults, name)
        try:
            model = ModelConfig(
                vocab_size=2,
                n_input=n_input,
                layers=layers,
                units=defaults.units,
                embedding_dim=defaults.embedding_dim,
            )
            return model, TrainingConfig(**training)
        except ModelError as exc:
            raise InvalidOption(str(exc)) from exc

    def _check_continue_options(self, options: ContinueOptions) -> GenerationOptions:
        limits = self.config.limits
        length = limits.default_continuation_symbols if options.length is None else options.length
        _check_int("length", length, 1, limits.continuation_symbols)
        temperature = options.temperature
        _check_float(
            "temperature",
            temperature,
            0,
            limits.max_temperature,
            " (0 always picks the likeliest word)",
        )
        if options.seed is not None:
            _check_int("seed", options.seed, 0, MAX_SEED)
        if options.top_k is not None:
            _check_int("top_k", options.top_k, 1, MAX_TOP_K)
        return GenerationOptions(
            length=length, temperature=float(temperature), top_k=options.top_k, seed=options.seed
        )

    def _check_prompt(self, prompt: str) -> list[str]:
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidOption(f"The prompt is too long (over {MAX_PROMPT_CHARS} characters).")
        tokens = tokenize(prompt)
        if not tokens:
            raise InvalidOption("Give at least one word to continue from.")
        limit = self.config.limits.prompt_symbols
        if len(tokens) > limit:
            raise InvalidOption(
                f"The prompt has {len(tokens)} words and punctuation marks; the limit is {limit}."
            )
        return tokens

    def _busy(self, channel: ChannelRef) -> None:
        job = self._by_channel.get(channel.channel_id)
        if job is not None:
            position = self._position(job)
            where = (
                f"queued at position {position}"
                if position is not None
                else f"running ({self._progress(job).epoch} epochs done)"
            )
            raise Busy(
                f"This channel already has a training (job #{job.job_id}, {where}). "
                "Wait for it or cancel it first.",
                job.job_id,
                position,
            )
        if channel.channel_id in self._reserved:
            raise Busy("Another story for this channel is being checked right now.", 0, None)

    # -- training ----------------------------------------------------------------------------

    async def train(
        self,
        channel: ChannelRef,
        member: Member,
        filename: str,
        data: bytes,
        options: TrainOptions,
        on_progress: ProgressCallback | None = None,
    ) -> TrainingJob:
        """Validate, store the story, queue the job and return at once (UserError if refused).

        An export file (see ``bot.export``) is imported instead: the returned job is already
        ``done`` and ``wait_for_job`` reports the imported model (``JobResult.imported``).
        """
        if self._closing:
            raise UserError("The bot is shutting down; try again in a minute.")
        if not member.is_admin:
            raise NotAllowed("You are not allowed to train fabulist in this channel.")
        if looks_like_export(data):
            imported = await self.import_channel(channel, member, data)
            return TrainingJob(
                job_id=imported.job_id,
                channel=channel,
                state="done",
                queue_position=None,
                story_id=imported.story_ids[-1],
                story_ids=imported.story_ids,
                requested_by=member.user_id,
            )
        self.check_upload_size(len(data))
        model_config, training_config = self._check_train_options(options)
        self._busy(channel)
        self._check_queue()
        self._reserved.add(channel.channel_id)
        try:
            stories = await self.store.list_stories(channel.channel_id)
            if len(stories) >= self.config.limits.stories_per_channel:
                raise InvalidUpload(
                    f"This channel already holds {len(stories)} stories (the limit); "
                    "remove one first."
                )
            prepared = await asyncio.to_thread(
                prepare_story,
                data,
                n_input=model_config.n_input,
                max_symbols=self.config.limits.story_symbols,
            )
            if options.mode == "append":
                total = prepared.symbols + sum(s.symbols for s in stories)
                if total > self.config.limits.story_symbols:
                    raise InvalidUpload(
                        f"With the earlier stories this would be {total:,} words and "
                        f"punctuation marks; the limit is {self.config.limits.story_symbols:,}. "
                        "Use mode replace, or remove a story first."
                    )
            self._check_queue()
            job_options = _job_options(options, model_config, training_config)
            record = await self.store.add_story_and_job(
                channel_id=channel.channel_id,
                guild_id=channel.guild_id,
                channel_name=channel.name,
                story=NewStory(
                    filename=clean_filename(filename),
                    uploader_id=member.user_id,
                    uploader_name=member.display_name,
                    text=prepared.text,
                    sha256=prepared.sha256,
                    encoding=prepared.encoding,
                    bytes=len(data),
                    symbols=prepared.symbols,
                    vocabulary_size=prepared.vocabulary_size,
                ),
                append=options.mode == "append",
                requested_by=member.user_id,
                requested_by_name=member.display_name,
                options=job_options,
            )
        finally:
            self._reserved.discard(channel.channel_id)
        job = self._enqueue(channel, record, on_progress)
        return TrainingJob(
            job_id=job.job_id,
            channel=channel,
            state=job.state,
            queue_position=self._position(job),
            story_id=record.story_ids[-1] if record.story_ids else None,
            story_ids=record.story_ids,
            requested_by=member.user_id,
        )

    def _check_queue(self) -> None:
        waiting = len(self._queue)
        free = len(self._running) < self.pool.size
        if waiting >= self.config.workers.queue_length and not (free and waiting == 0):
            raise QueueFull(
                f"The training queue is full ({waiting} waiting); try again in a few minutes."
            )

    def _enqueue(
        self, channel: ChannelRef, record: JobRecord, on_progress: ProgressCallback | None
    ) -> _Job:
        loop = asyncio.get_running_loop()
        job = _Job(
            job_id=record.id,
            channel=channel,
            requested_by=record.requested_by,
            story_ids=record.story_ids,
            options=record.options,
            result=loop.create_future(),
        )
        if on_progress is not None:
            job.subscribers.append(_Subscriber(on_progress, self._tasks))
        self._jobs[job.job_id] = job
        self._by_channel[channel.channel_id] = job
        self._queue.append(job)
        self._dispatch()
        if job.state == "queued":
            self._emit(job)
        return job

    def subscribe(self, job_id: int, on_progress: ProgressCallback) -> bool:
        """Add a progress callback to an open job (False if the job is not open)."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        job.subscribers.append(_Subscriber(on_progress, self._tasks))
        return True

    def _dispatch(self) -> None:
        while self._queue and not self._closing and len(self._running) < self.pool.size:
            job = self._queue.popleft()
            job.state = "running"
            job.started = time.monotonic()
            self._running.add(job.job_id)
            self._spawn_task(self._run(job))
            for waiting in self._queue:
                self._emit(waiting)

    def _spawn_task(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: _Job) -> None:
        result: JobResult
        try:
            await self.store.start_job(job.job_id)
            self._emit(job)
            # A cancel or /forget may arrive while this task still awaits the database: it must
            # not be lost (the worker has not got the job yet), so look before each hand-over.
            outcome: TrainingOutcome | None = None
            if not self._stopped(job):
                texts = await self.store.story_texts(job.story_ids)
                if not self._stopped(job):
                    task = TrainingTask(
                        job_id=job.job_id,
                        texts=tuple(texts),
                        model=dict(job.options["model"]),
                        training=dict(job.options["training"]),
                        vocabulary_max_size=self.config.training.vocabulary_max_size,
                    )
                    del texts  # the texts live only as long as the hand-over
                    outcome = await self.pool.run(
                        task, lambda data: self._on_worker_progress(job, data)
                    )
            if outcome is None:
                outcome = TrainingOutcome(job.job_id, "cancelled", error="Training was cancelled.")
            result = await self._finish(job, outcome)
        except asyncio.CancelledError:
            self.pool.forget_cancel(job.job_id)
            raise
        except Exception as exc:
            logger.exception("training job %d failed in the service", job.job_id)
            message = (
                str(exc) if isinstance(exc, StorageError) else "Training failed (internal error)."
            )
            result = JobResult(job.job_id, "failed", message, None, None)
            if job.discarded is None:
                with contextlib.suppress(Exception):
                    await self.store.finish_job(job.job_id, "failed", message)
        # A cancel the pool remembered for a job it never ran must not hit a later job that
        # reuses the id (a forgotten channel's rows are deleted).
        self.pool.forget_cancel(job.job_id)
        self._settle(job, result)

    @staticmethod
    def _stopped(job: _Job) -> bool:
        return job.cancel_requested or job.discarded is not None

    async def _kept(self, channel: ChannelRef) -> str:
        """:data:`KEPT` if the channel still has an active model, else an empty string."""
        kept = await self.store.active_model_id(channel.channel_id) is not None
        return KEPT if kept else ""

    async def _finish(self, job: _Job, outcome: TrainingOutcome) -> JobResult:
        if job.discarded is not None:
            if job.discarded == "forgotten":
                message = "The channel was forgotten."
            else:
                message = SHUTDOWN_MESSAGE.format(kept="")
                with contextlib.suppress(Exception):
                    message = SHUTDOWN_MESSAGE.format(kept=await self._kept(job.channel))
            return JobResult(job.job_id, "cancelled", message, None, None)
        if outcome.state == "done" and job.cancel_requested:
            # The cancel came too late to stop the worker: keep the promise, not the model.
            outcome = TrainingOutcome(job.job_id, "cancelled")
        if outcome.state == "done":
            assert outcome.blob is not None and outcome.config is not None
            assert outcome.figures is not None and outcome.vocabulary is not None
            try:
                figures = TrainingFigures.from_dict(outcome.figures)
                record = await self.store.activate_model(
                    job_id=job.job_id,
                    channel_id=job.channel.channel_id,
                    model=NewModel(
                        config=outcome.config,
                        vocabulary=outcome.vocabulary,
                        blob=outcome.blob,
                        figures=outcome.figures,
                        options=job.options,
                    ),
                    story_ids=job.story_ids,
                    keep_versions=self.config.storage.model_versions_kept,
                )
            except (StorageError, ModelError) as exc:
                message = f"The trained model could not be stored: {exc}"
                await self.store.finish_job(job.job_id, "failed", message)
                return JobResult(job.job_id, "failed", message, None, None)
            logger.info(
                "channel %d: model version %d active (job %d)",
                job.channel.channel_id,
                record.version,
                job.job_id,
            )
            return JobResult(job.job_id, "done", None, record.version, figures)
        if outcome.state == "cancelled":
            message = "Training was cancelled." + await self._kept(job.channel)
            await self.store.finish_job(job.job_id, "cancelled", message)
            return JobResult(job.job_id, "cancelled", message, None, None)
        message = (outcome.error or "Training failed.") + await self._kept(job.channel)
        await self.store.finish_job(job.job_id, "failed", message)
        return JobResult(job.job_id, "failed", message, None, None)

    def _settle(self, job: _Job, result: JobResult) -> None:
        self._running.discard(job.job_id)
        self._jobs.pop(job.job_id, None)
        if self._by_channel.get(job.channel.channel_id) is job:
            del self._by_channel[job.channel.channel_id]
        job.state = result.state
        if not job.result.done():
            job.result.set_result(result)
        self._emit(job, error=result.error)
        self._dispatch()

    def _on_worker_progress(self, job: _Job, data: dict[str, Any]) -> None:
        if job.job_id not in self._jobs:
            return
        job.progress = data
        self._emit(job)
        now = time.monotonic()
        if now - job.last_saved >= 1.0 and job.discarded is None:
            job.last_saved = now
            self._spawn_task(self._save_progress(job.job_id, data))

    async def _save_progress(self, job_id: int, data: dict[str, Any]) -> None:
        try:
            await self.store.update_job_progress(job_id, data)
        except Exception:
            logger.exception("could not save progress of job %d", job_id)

    def _position(self, job: _Job) -> int | None:
        for index, queued in enumerate(self._queue):
            if queued is job:
                return index + 1
        return None

    def _progress(self, job: _Job, error: str | None = None) -> JobProgress:
        data = job.progress or {}
        state = "cancelling" if job.cancel_requested and job.state == "running" else job.state
        elapsed = data.get("elapsed_seconds")
        if elapsed is None:
            elapsed = 0.0 if job.started is None else time.monotonic() - job.started
        return JobProgress(
            job_id=job.job_id,
            state=state,
            epoch=int(data.get("epoch", 0)),
            max_epochs=int(data.get("max_epochs", job.options["training"]["max_epochs"])),
            loss=data.get("loss"),
            accuracy=data.get("accuracy"),
            learnable_accuracy=data.get("learnable_accuracy"),
            eta_seconds=data.get("eta_seconds"),
            elapsed_seconds=float(elapsed),
            queue_position=self._position(job),
            val_accuracy=data.get("val_accuracy"),
            error=error,
            reason=job.options.get("reason"),
        )

    def _emit(self, job: _Job, error: str | None = None) -> None:
        if not job.subscribers:
            return
        progress = self._progress(job, error)
        for subscriber in job.subscribers:
            subscriber.deliver(progress)

    async def wait_for_job(self, job_id: int) -> JobResult:
        job = self._jobs.get(job_id)
        if job is not None:
            return await asyncio.shield(job.result)
        record = await self.store.job(job_id)
        if record is None:
            raise NotFound(f"There is no training job #{job_id}.")
        return await self._result_of(record)

    async def _result_of(self, record: JobRecord) -> JobResult:
        version: int | None = None
        figures: TrainingFigures | None = None
        model = None if record.model_id is None else await self.store.model(record.model_id)
        if model is not None:
            version = model.version
            figures = _figures(model)
        imported = record.options.get("mode") == "import"
        return JobResult(record.id, record.state, record.error, version, figures, imported)

    async def cancel(self, channel: ChannelRef, member: Member) -> JobProgress | None:
        """Cancel the channel's queued or running job; None if there is none."""
        job = self._by_channel.get(channel.channel_id)
        if job is None:
            return None
        if not member.is_admin and member.user_id != job.requested_by:
            raise NotAllowed("Only the member who started this training or an admin can cancel it.")
        if job.state == "queued":
            with contextlib.suppress(ValueError):
                self._queue.remove(job)
            message = "Training was cancelled before it started."
            await self.store.finish_job(job.job_id, "cancelled", message)
            self._settle(job, JobResult(job.job_id, "cancelled", message, None, None))
            for waiting in self._queue:
                self._emit(waiting)
            return self._progress(job)
        job.cancel_requested = True
        await self.pool.cancel(job.job_id)
        self._emit(job)
        return self._progress(job)

    async def job_progress(self, channel: ChannelRef) -> JobProgress | None:
        job = self._by_channel.get(channel.channel_id)
        return None if job is None else self._progress(job)

    # -- progress messages (kept for adapters across restarts) ---------------------------------

    async def set_progress_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Record the message that shows ``job_id``'s progress until ``progress_message_updated``.

        A process killed before it updates the message leaves it showing a running job (and
        its Cancel button); the next process finds it in ``stale_progress_messages``.
        """
        await self.store.set_progress_message(job_id, channel_id, message_id)

    async def progress_message_updated(self, job_id: int) -> None:
        """The job's progress message now shows its end (or is gone): forget it."""
        await self.store.clear_progress_message(job_id)

    async def stale_progress_messages(self) -> list[EndedJob]:
        """Recorded progress messages of ended jobs that were never updated to show the end.

        Call after ``start``: the jobs a killed process left open are interrupted by then.
        """
        return [await self._ended(record) for record in await self.store.stale_progress_messages()]

    async def ended_job(self, channel: ChannelRef, job_id: int) -> EndedJob | None:
        """``job_id`` of this channel if it has ended; None while it is open, or if unknown."""
        if job_id in self._jobs:
            return None
        record = await self.store.job(job_id)
        if record is None or record.channel_id != channel.channel_id:
            return None
        if record.state in ("queued", "running"):
            return None
        return await self._ended(record)

    async def _ended(self, record: JobRecord) -> EndedJob:
        story = (
            await self.store.story(record.channel_id, record.story_ids[-1])
            if record.story_ids
            else None
        )
        return EndedJob(
            channel=ChannelRef(guild_id=record.guild_id, channel_id=record.channel_id),
            filename=story.filename if story is not None else None,
            result=await self._result_of(record),
            message_id=record.progress_message_id,
            message_channel_id=record.progress_channel_id,
        )

    # -- generation --------------------------------------------------------------------------

    async def continue_story(
        self,
        channel: ChannelRef,
        prompt: str,
        options: ContinueOptions,
        *,
        member: Member | None = None,
    ) -> Continuation:
        """Continue ``prompt`` with the channel's active model (off the loop).

        With ``member``, the per-user cooldown ``cooldowns.continue_seconds`` applies. It is
        charged up front (so concurrent requests cannot slip through) and refunded when the
        request fails, so a member can correct a refused prompt at once.
        """
        generation = self._check_continue_options(options)
        tokens = self._check_prompt(prompt)
        charge = None if member is None else self._charge_cooldown(member)
        try:
            entry = await self._model_for(channel)
            loop = asyncio.get_running_loop()
            try:
                symbols, share = await loop.run_in_executor(
                    self._executor, _generate, entry, tokens, generation
                )
            except UnknownWordsError as exc:
                raise UnknownWords(str(exc), exc.words, exc.suggestions) from None
            except ModelError as exc:
                raise InvalidOption(str(exc)) from None
        except BaseException:
            if member is not None and charge is not None:
                self._refund_cooldown(member, charge)
            raise
        return Continuation(
            prompt_symbols=tokens,
            symbols=symbols,
            text=detokenize([*tokens, *symbols]),
            model_version=entry.version,
            original_share=share,
        )

    def _charge_cooldown(self, member: Member) -> tuple[float | None, float] | None:
        """CoolingDown if the member must wait; else start the cooldown and return
        (the previous ready time, the new one) for :meth:`_refund_cooldown`."""
        seconds = self.config.cooldowns.continue_seconds
        if seconds <= 0:
            return None
        now = time.monotonic()
        previous = self._cooldowns.get(member.user_id)
        if previous is not None and now < previous:
            wait = previous - now
            raise CoolingDown(f"Slow down: try again in {wait:.1f} s.", wait)
        self._cooldowns[member.user_id] = now + seconds
        if len(self._cooldowns) > 10_000:
            self._cooldowns = {u: t for u, t in self._cooldowns.items() if t > now}
        return previous, now + seconds

    def _refund_cooldown(self, member: Member, charge: tuple[float | None, float]) -> None:
        previous, charged = charge
        if self._cooldowns.get(member.user_id) != charged:
            return  # a later request charged it meanwhile
        if previous is None:
            del self._cooldowns[member.user_id]
        else:
            self._cooldowns[member.user_id] = previous

    async def complete_word(self, channel: ChannelRef, prefix: str, limit: int = 25) -> list[str]:
        """Vocabulary words starting with ``prefix`` (autocomplete); [] without a model."""
        try:
            entry = await self._model_for(channel)
        except NoModel:
            return []
        words = tokenize(prefix)
        last = words[-1] if words and not prefix.endswith(" ") else ""
        return entry.model.vocabulary.complete(last, max(1, min(limit, 25)))

    async def _model_for(self, channel: ChannelRef) -> _CachedModel:
        model_id = await self.store.active_model_id(channel.channel_id)
        if model_id is None:
            raise NoModel("No story has been trained in this channel yet. Use /train first.")
        cached = self._cache.get(channel.channel_id)
        if cached is not None and cached.model_id == model_id:
            self._cache.move_to_end(channel.channel_id)
            return cached
        loading = self._loading.get(model_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(model_id))
            self._loading[model_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(model_id, None))
        entry = await asyncio.shield(loading)
        self._keep(channel.channel_id, entry)
        return entry

    def _keep(self, channel_id: int, entry: _CachedModel) -> None:
        """Cache ``entry`` as most recently used, then drop the least recently used models
        until both bounds hold. A model larger than the whole byte bound is not kept: it
        answers the request that loaded it and loads again next time (keeping it would break
        the bound; refusing it would leave the channel without answers)."""
        self._cache.pop(channel_id, None)
        max_bytes = self.config.cache.megabytes * MIB
        if entry.nbytes > max_bytes:
            logger.warning(
                "model %d takes %.0f MiB, more than [cache] megabytes = %d: not cached",
                entry.model_id,
                entry.nbytes / MIB,
                self.config.cache.megabytes,
            )
            return
        self._cache[channel_id] = entry
        total = sum(cached.nbytes for cached in self._cache.values())
        while len(self._cache) > self.config.cache.models or total > max_bytes:
            _, evicted = self._cache.popitem(last=False)
            total -= evicted.nbytes

    async def _load(self, model_id: int) -> _CachedModel:
        blob = await self.store.model_blob(model_id)
        record = await self.store.model(model_id)
        if blob is None or record is None:
            raise NoModel("This channel's model was just removed; try again.")
        texts = await self.store.story_texts(record.story_ids)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, _load_model, model_id, record.version, blob, texts
        )

    @property
    def cached_models(self) -> int:
        return len(self._cache)

    @property
    def cache_stats(self) -> CacheStats:
        return CacheStats(
            models=len(self._cache),
            bytes=sum(entry.nbytes for entry in self._cache.values()),
            max_models=self.config.cache.models,
            max_bytes=self.config.cache.megabytes * MIB,
            channels=tuple(self._cache),
        )

    # -- cards and library -------------------------------------------------------------------

    async def story_card(self, channel: ChannelRef) -> StoryCard:
        model = await self.store.active_model(channel.channel_id)
        stories = {s.id: s for s in await self.store.list_stories(channel.channel_id)}
        job = self._by_channel.get(channel.channel_id)
        recent = await self.store.jobs(channel.channel_id, limit=5)
        last = next((r for r in recent if r.state not in ("queued", "running")), None)
        last_result = None if last is None else await self._result_of(last)
        latest: StoryRecord | None = None
        figures: TrainingFigures | None = None
        if model is not None:
            known = [stories[i] for i in model.story_ids if i in stories]
            latest = known[-1] if known else None
            figures = _figures(model)
        return StoryCard(
            channel=channel,
            has_model=model is not None,
            model_version=None if model is None else model.version,
            story_filename=None if latest is None else latest.filename,
            story_uploader=None if latest is None else latest.uploader_name,
            story_uploaded_at=None if latest is None else latest.created_at,
            stories=0 if model is None else len(model.story_ids),
            symbols=None if figures is None else figures.symbols,
            vocabulary_size=None if model is None else model.vocabulary_size,
            vocabulary_covered_share=None if figures is None else figures.covered_share,
            learnable_accuracy=None if figures is None else figures.learnable_accuracy,
            accuracy=None if figures is None else figures.accuracy,
            val_accuracy=None if figures is None else figures.val_accuracy,
            val_perplexity=None if figures is None else figures.val_perplexity,
            epochs=None if figures is None else figures.epochs,
            training_seconds=None if figures is None else figures.seconds,
            trained_at=None if model is None else model.created_at,
            job=None if job is None else self._progress(job),
            last_job=last_result,
            notice=None if job is None else job.options.get("reason"),
            vocabulary_cap=None if figures is None else figures.vocabulary_cap,
        )

    async def forget(self, channel: ChannelRef, member: Member) -> None:
        """Delete the channel's stories, models and jobs (cancelling an open job)."""
        if not member.is_admin:
            raise NotAllowed("You are not allowed to make fabulist forget this channel.")
        job = self._by_channel.get(channel.channel_id)
        if job is not None:
            job.discarded = "forgotten"
            if job.state == "queued":
                with contextlib.suppress(ValueError):
                    self._queue.remove(job)
                self._settle(
                    job,
                    JobResult(job.job_id, "cancelled", "The channel was forgotten.", None, None),
                )
            else:
                await self.pool.cancel(job.job_id)
        await self.store.forget_channel(channel.channel_id)
        self._cache.pop(channel.channel_id, None)

    async def training_plot(self, channel: ChannelRef) -> bytes | None:
        """PNG of the active model's loss and accuracy per epoch (rendered off the loop)."""
        model = await self.store.active_model(channel.channel_id)
        if model is None:
            return None
        figures = _figures(model)
        if figures is None or not figures.history:
            return None
        from bot.plot import training_plot_png

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, training_plot_png, figures)

    async def list_stories(self, channel: ChannelRef) -> list[StoryInfo]:
        return [
            StoryInfo(s.id, s.filename, s.uploader_id, s.uploader_name, s.symbols, s.created_at)
            for s in await self.store.list_stories(channel.channel_id)
        ]

    async def list_versions(self, channel: ChannelRef) -> list[ModelVersion]:
        versions = []
        for model in await self.store.list_models(channel.channel_id):
            figures = _figures(model)
            versions.append(
                ModelVersion(
                    version=model.version,
                    active=model.active,
                    created_at=model.created_at,
                    story_ids=model.story_ids,
                    learnable_accuracy=None if figures is None else figures.learnable_accuracy,
                    epochs=None if figures is None else figures.epochs,
                )
            )
        return versions

    async def rollback(
        self, channel: ChannelRef, member: Member, version: int | None = None
    ) -> ModelVersion:
        """Make a kept version active (default: the one before the active one)."""
        if not member.is_admin:
            raise NotAllowed("You are not allowed to roll back this channel's model.")
        if version is not None:
            _check_int("version", version, 1, 2**31 - 1)
        versions = await self.list_versions(channel)
        if not versions:
            raise NoModel("This channel has no trained model to roll back.")
        if version is None:
            active = next((v.version for v in versions if v.active), None)
            older = [v.version for v in versions if active is None or v.version < active]
            if not older:
                raise NotFound("There is no earlier model version to roll back to.")
            version = older[0]
        record = await self.store.set_active_version(channel.channel_id, version)
        if record is None:
            kept = ", ".join(str(v.version) for v in versions)
            raise NotFound(f"Version {version} is not kept; kept versions: {kept}.")
        return next(v for v in await self.list_versions(channel) if v.version == version)

    async def remove_story(
        self,
        channel: ChannelRef,
        member: Member,
        story_id: int,
        on_progress: ProgressCallback | None = None,
    ) -> StoryRemoval:
        """Delete a story and every model trained on it; queue a retraining on what remains.

        Allowed for the story's uploader and admins. Refused (Busy) while the channel trains.
        If the active model was trained on the story, the newest kept version not trained on it
        answers meanwhile; the retraining uses the active model's other stories (or, if it had
        none and no older version is kept, the newest remaining story).
        """
        if self._closing:
            raise UserError("The bot is shutting down; try again in a minute.")
        _check_int("story id", story_id, 1, 2**63 - 1)
        story = await self.store.story(channel.channel_id, story_id)
        if story is None:
            raise NotFound(f"This channel has no story #{story_id}; /story list shows them.")
        if not member.is_admin and member.user_id != story.uploader_id:
            raise NotAllowed("Only the member who uploaded this story or an admin can remove it.")
        self._busy(channel)
        self._reserved.add(channel.channel_id)
        try:
            active = await self.store.active_model(channel.channel_id)
            deletion = await self.store.delete_story(
                channel.channel_id,
                story_id,
                guild_id=channel.guild_id,
                retrain_options=self._retrain_options(active),
                requested_by=member.user_id,
                requested_by_name=member.display_name,
            )
        finally:
            self._reserved.discard(channel.channel_id)
        if deletion is None:
            raise NotFound(f"This channel has no story #{story_id}; /story list shows them.")
        self._cache.pop(channel.channel_id, None)
        logger.info(
            "channel %d: story %d removed with versions %s",
            channel.channel_id,
            story_id,
            deletion.deleted_versions,
        )
        retraining: TrainingJob | None = None
        if deletion.retrain_job is not None:
            job = self._enqueue(channel, deletion.retrain_job, on_progress)
            retraining = TrainingJob(
                job_id=job.job_id,
                channel=channel,
                state=job.state,
                queue_position=self._position(job),
                story_id=None,
                story_ids=job.story_ids,
                requested_by=member.user_id,
            )
        return StoryRemoval(
            story_id=story_id,
            filename=story.filename,
            deleted_versions=deletion.deleted_versions,
            active_version=deletion.active_version,
            retraining=retraining,
        )

    def _retrain_options(self, active: ModelRecord | None) -> dict[str, Any]:
        """Job options for a retraining: the active model's layers, n_input and seed."""
        config = {} if active is None else active.config
        seed = None if active is None else active.options.get("seed")
        candidate = TrainOptions(
            layers=config.get("layers"),
            n_input=config.get("n_input"),
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        )
        try:
            model_config, training_config = self._check_train_options(candidate)
        except InvalidOption:
            candidate = TrainOptions()
            model_config, training_config = self._check_train_options(candidate)
        return _job_options(candidate, model_config, training_config)

    async def export_channel(
        self, channel: ChannelRef, member: Member | None = None
    ) -> tuple[str, bytes]:
        """(file name, bytes) of the channel's export: stories, active model, its card.

        With ``member``, only admins may export (the file holds every uploaded text).
        """
        if member is not None and not member.is_admin:
            raise NotAllowed("You are not allowed to export this channel's stories.")
        snapshot = await self.store.snapshot(channel.channel_id)
        if snapshot is None:
            raise NoModel("This channel has no trained model to export. Use /train first.")
        card = await self.story_card(channel)
        positions = {record.id: i for i, (record, _) in enumerate(snapshot.stories)}
        export = ChannelExport(
            channel_name=_printable(snapshot.channel.name or channel.name),
            exported_at=now_iso(),
            stories=tuple(
                ExportedStory(
                    filename=record.filename,
                    uploader_id=record.uploader_id,
                    uploader_name=_printable(record.uploader_name),
                    created_at=record.created_at,
                    text=text,
                    sha256="",
                    symbols=record.symbols,
                )
                for record, text in snapshot.stories
            ),
            model_blob=snapshot.blob,
            model_sha256="",
            model_version=snapshot.model.version,
            model_created_at=snapshot.model.created_at,
            model_story_indexes=tuple(positions[i] for i in snapshot.model.story_ids),
            options={
                k: v
                for k, v in snapshot.model.options.items()
                if k in ("layers", "n_input", "seed", "mode") and v is not None
            },
            card={k: v for k, v in _card_fields(card).items() if v is not None},
        )
        data = await asyncio.to_thread(write_export, export)
        if len(data) > self.export_limits.file_bytes:
            raise UserError("This channel's export would be too large to import again.")
        return export_filename(export.channel_name, snapshot.model.version), data

    async def import_channel(
        self, channel: ChannelRef, member: Member, data: bytes
    ) -> ImportResult:
        """Restore an export into ``channel``: its stories join the channel's, its model becomes
        the active new version (earlier versions stay, so /story rollback undoes it).

        Every field is checked first (InvalidExport); on any error nothing is changed.
        """
        if self._closing:
            raise UserError("The bot is shutting down; try again in a minute.")
        if not member.is_admin:
            raise NotAllowed("You are not allowed to import into this channel.")
        limits = self.export_limits
        if len(data) > limits.file_bytes:
            raise InvalidExport(
                f"The file is {_size(len(data))}; an export may be {_size(limits.file_bytes)}."
            )
        self._busy(channel)
        self._reserved.add(channel.channel_id)
        try:
            parsed = await asyncio.to_thread(read_export, data, limits)
            assert parsed.model is not None
            model = parsed.model
            if model.config.n_input > MAX_N_INPUT:
                raise InvalidExport(f"The model's n_input is above {MAX_N_INPUT}.")
            stories = await asyncio.to_thread(self._check_imported_stories, parsed)
            options: dict[str, Any] = {
                **parsed.options,
                "mode": "import",
                "model": {k: v for k, v in model.config.to_dict().items() if k != "vocab_size"},
            }
            try:
                job, record, story_ids = await self.store.import_channel(
                    channel_id=channel.channel_id,
                    guild_id=channel.guild_id,
                    channel_name=channel.name,
                    stories=stories,
                    model_story_positions=parsed.model_story_indexes,
                    model=NewModel(
                        config=model.config.to_dict(),
                        vocabulary=model.vocabulary.symbols,
                        blob=parsed.model_blob,
                        figures=model.figures.to_dict(),
                        options=options,
                    ),
                    requested_by=member.user_id,
                    requested_by_name=member.display_name,
                    max_stories=self.config.limits.stories_per_channel,
                    keep_versions=self.config.storage.model_versions_kept,
                )
            except StorageError as exc:
                raise InvalidUpload(f"The export cannot be imported here: {exc}.") from None
        finally:
            self._reserved.discard(channel.channel_id)
        self._cache.pop(channel.channel_id, None)
        logger.info(
            "channel %d: imported %d stories, model version %d (job %d)",
            channel.channel_id,
            len(story_ids),
            record.version,
            job.id,
        )
        return ImportResult(
            job_id=job.id,
            model_version=record.version,
            story_ids=story_ids,
            source_channel=parsed.channel_name,
            exported_at=parsed.exported_at,
            figures=model.figures,
        )

    def _check_imported_stories(self, parsed: ChannelExport) -> list[ImportedStory]:
        """Each story must pass the upload checks and match its declared symbol count."""
        assert parsed.model is not None
        stories = []
        for number, story in enumerate(parsed.stories, start=1):
            raw = story.text.encode("utf-8")
            try:
                prepared = prepare_story(
                    raw,
                    n_input=parsed.model.config.n_input,
                    max_symbols=self.config.limits.story_symbols,
                )
            except InvalidUpload as exc:
                raise InvalidExport(
                    f"Story {number} in the file is refused: {exc.message}"
                ) from None
            if prepared.symbols != story.symbols:
                raise InvalidExport(
                    f"Story {number} in the file has {prepared.symbols} symbols, "
                    f"its manifest says {story.symbols}. Nothing was imported."
                )
            stories.append(
                ImportedStory(
                    NewStory(
                        filename=clean_filename(story.filename),
                        uploader_id=story.uploader_id,
                        uploader_name=story.uploader_name,
                        text=prepared.text,
                        sha256=prepared.sha256,
                        encoding="utf-8",
                        bytes=len(raw),
                        symbols=prepared.symbols,
                        vocabulary_size=prepared.vocabulary_size,
                    ),
                    story.created_at,
                )
            )
        return stories


def _figures(model: ModelRecord) -> TrainingFigures | None:
    try:
        return TrainingFigures.from_dict(model.figures)
    except ModelError:
        logger.warning("model %d has unreadable figures", model.id)
        return None


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(f"{name} must be a whole number from {low} to {high}.")


def _check_float(name: str, value: object, low: float, high: float, hint: str = "") -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise InvalidOption(f"{name} must be a number from {low:g} to {high:g}{hint}.")


def _job_options(
    options: TrainOptions, model_config: ModelConfig, training_config: TrainingConfig
) -> dict[str, Any]:
    return {
        **{k: v for k, v in asdict(options).items() if v is not None},
        "model": {k: v for k, v in model_config.to_dict().items() if k != "vocab_size"},
        "training": asdict(training_config),
    }


def _card_fields(card: StoryCard) -> dict[str, Any]:
    """The card's plain fields for an export (finite numbers, short texts only)."""
    fields: dict[str, Any] = {}
    for name in (
        "model_version",
        "story_filename",
        "story_uploader",
        "stories",
        "symbols",
        "vocabulary_size",
        "vocabulary_covered_share",
        "learnable_accuracy",
        "accuracy",
        "val_accuracy",
        "val_perplexity",
        "epochs",
        "training_seconds",
        "trained_at",
    ):
        value = getattr(card, name)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if isinstance(value, str):
            value = "".join(ch for ch in value if ch.isprintable())[:200] or None
        fields[name] = value
    return fields


def _printable(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable())[:200]
    return cleaned or None
