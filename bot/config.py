"""Configuration: one TOML file read once with ``tomllib`` into a frozen dataclass tree.

Every setting has a default, so no file at all is a valid configuration for the offline commands
(``train``, ``continue``, ``console``); only ``run``/``sync`` need a Discord token. The environment
variable ``DISCORD_TOKEN`` overrides ``discord.token``. An unknown key or a bad value raises
``ConfigError`` whose message names the key, e.g. ``limits.story_bytes must be a positive integer``.
``config.example.toml`` documents every setting.

Each field's constraints live in its ``metadata`` (``min``, ``max``, ``choices``, ``pattern``) so
the loader, the error messages and the documentation stay in one place.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from model.config import MAX_N_INPUT, default_n_input

__all__ = [
    "CacheConfig",
    "Config",
    "ConfigError",
    "CooldownsConfig",
    "DiscordConfig",
    "FiltersConfig",
    "HistoryConfig",
    "LimitsConfig",
    "LoggingConfig",
    "PermissionsConfig",
    "StorageConfig",
    "TrainingDefaults",
    "WorkersConfig",
    "load_config",
]

TOKEN_ENV = "DISCORD_TOKEN"
DATABASE_URL_ENV = "FABULIST_DATABASE_URL"
STORAGE_URL_PATTERN = r"(sqlite:///|postgres(ql)?://)\S+"
_SNAKE = r"[a-z][a-z0-9_]*"


def _c(**constraints: Any) -> dict[str, Any]:
    return constraints


@dataclass(frozen=True)
class DiscordConfig:
    token: str | None = field(default=None, repr=False, metadata=_c(secret=True))
    api_base_url: str | None = field(default=None, metadata=_c(pattern=r"https?://\S+"))
    gateway_url: str | None = field(default=None, metadata=_c(pattern=r"wss?://\S+"))
    dev_guild_id: int | None = field(default=None, metadata=_c(min=1))
    shard_count: int | None = field(default=None, metadata=_c(min=1))
    shard_ids: tuple[int, ...] | None = field(default=None, metadata=_c(min=0))
    # The privileged Message Content intent (Developer Portal > Bot), needed only to learn from
    # channel history (/train source:history).
    message_content: bool = False


@dataclass(frozen=True)
class HistoryConfig:
    # Messages read by /train source:history: at most ``max_messages``, ``default_messages``
    # when the admin names no number. Learning from history needs discord.message_content and
    # a server admin's /privacy server history:on.
    max_messages: int = field(default=5000, metadata=_c(min=1, max=1_000_000))
    default_messages: int = field(default=1000, metadata=_c(min=1))
    # Messages starting with one of these are commands for some bot: never learned.
    command_prefixes: tuple[str, ...] = ("!", "?", ".", "/", "$")


@dataclass(frozen=True)
class StorageConfig:
    database: Path = Path("data/fabulist.sqlite3")
    model_versions_kept: int = field(default=3, metadata=_c(min=1, max=100))
    # sqlite:///relative/path, sqlite:////absolute/path or postgresql://user[:pass]@host[:port]/db;
    # None: the SQLite file ``database``. FABULIST_DATABASE_URL overrides it. Never shown.
    url: str | None = field(
        default=None, repr=False, metadata=_c(pattern=STORAGE_URL_PATTERN, secret=True)
    )
    # A file holding the PostgreSQL password (e.g. a container secret), read when connecting.
    password_file: Path | None = None
    # PostgreSQL: the longest one connection attempt, wait for a free connection or command may
    # take; a server that does not answer fails the request with a clear message in that time.
    timeout_seconds: float = field(default=4.0, metadata=_c(min=0.1, max=600.0))
    # PostgreSQL: how long a process's claim on its trainings lasts unrenewed (it renews every
    # third of it). Another process interrupts a job only once its owner's lease ran out (or its
    # process is gone, seen from the same host): a shorter outage of the database loses nothing.
    owner_lease_seconds: float = field(default=15.0, metadata=_c(min=1.0, max=3600.0))

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        if self.url is not None and not self.url.startswith("sqlite:"):
            return "postgresql"
        return "sqlite"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file: the url's path (sqlite:///x is x, relative) or ``database``."""
        if self.url is not None and self.url.startswith("sqlite:///"):
            return Path(self.url.removeprefix("sqlite:///")).expanduser()
        return self.database


@dataclass(frozen=True)
class LimitsConfig:
    story_bytes: int = field(default=4 * 1024 * 1024, metadata=_c(min=1))
    story_symbols: int = field(default=500_000, metadata=_c(min=2))
    stories_per_channel: int = field(default=50, metadata=_c(min=1))
    prompt_symbols: int = field(default=32, metadata=_c(min=1))
    continuation_symbols: int = field(default=256, metadata=_c(min=1))
    default_continuation_symbols: int = field(default=32, metadata=_c(min=1))
    max_temperature: float = field(default=2.0, metadata=_c(min=0.0, max=100.0))


@dataclass(frozen=True)
class TrainingDefaults:
    layers: int = field(default=1, metadata=_c(min=1, max=2))
    units: int = field(default=512, metadata=_c(min=1, max=4096))
    # None: chosen by the story's size (model.config.default_embedding_dim: 64, 256 from 20,000
    # symbols on, where the output layer is tied to the word vectors).
    embedding_dim: int | None = field(default=None, metadata=_c(min=1, max=4096))
    # None: chosen by the story's size (model.config.default_n_input: 3, 10 for long stories).
    n_input: int | None = field(default=None, metadata=_c(min=1, max=MAX_N_INPUT))
    max_epochs: int = field(default=300, metadata=_c(min=1))
    max_seconds: float = field(default=600.0, metadata=_c(min=0.1))
    vocabulary_max_size: int = field(default=20_000, metadata=_c(min=2))
    # None keeps the model package's measured defaults.
    batch_size: int | None = field(default=None, metadata=_c(min=1))
    learning_rate: float | None = field(default=None, metadata=_c(min=1e-9, max=10.0))
    optimizer: str | None = field(default=None, metadata=_c(choices=("adam", "rmsprop")))


@dataclass(frozen=True)
class WorkersConfig:
    count: int = field(default=1, metadata=_c(min=1, max=64))
    queue_length: int = field(default=20, metadata=_c(min=0))
    generation_threads: int = field(default=2, metadata=_c(min=1, max=64))
    # Start the trainers with the bot, so the first training does not wait for TensorFlow's
    # import; false: at the first training (an idle trainer's memory: docs/configuration.md).
    warm: bool = True
    # Where trainings run: "local" (``count`` spawned processes) or "ray" (the ray_* settings).
    backend: str = field(default="local", metadata=_c(choices=("local", "ray")))
    # None (or ""): a local Ray cluster started by the bot; else "auto", "host:port", "ray://...".
    ray_address: str | None = field(default=None, metadata=_c(pattern=r"\S+", empty_is_none=True))
    cpus_per_job: float = field(default=1.0, metadata=_c(min=0.01, max=1024.0))
    gpus_per_job: float = field(default=0.0, metadata=_c(min=0.0, max=64.0))
    max_concurrent_jobs: int = field(default=1, metadata=_c(min=1, max=100_000))
    ray_keras_backend: str | None = field(default=None, metadata=_c(choices=("tensorflow", "jax")))


@dataclass(frozen=True)
class CacheConfig:
    # Both bounds hold: at most ``models`` cached models taking at most ``megabytes`` MiB.
    models: int = field(default=32, metadata=_c(min=1))
    megabytes: int = field(default=512, metadata=_c(min=1, max=1_048_576))


@dataclass(frozen=True)
class PermissionsConfig:
    train_permission: str = field(default="manage_channels", metadata=_c(pattern=_SNAKE))
    train_role_ids: tuple[int, ...] = field(default=(), metadata=_c(min=1))


@dataclass(frozen=True)
class CooldownsConfig:
    continue_seconds: float = field(default=2.0, metadata=_c(min=0.0))


@dataclass(frozen=True)
class FiltersConfig:
    # A story holding a server's filtered word: "mask" trains it with those words cut out,
    # "refuse" turns the upload down (naming the words, to the admin only).
    on_story: str = field(default="mask", metadata=_c(choices=("mask", "refuse")))
    # Most filtered words one server may keep.
    max_words: int = field(default=500, metadata=_c(min=1, max=100_000))


@dataclass(frozen=True)
class LoggingConfig:
    level: str = field(
        default="INFO", metadata=_c(choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    )


@dataclass(frozen=True)
class Config:
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    training: TrainingDefaults = field(default_factory=TrainingDefaults)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    permissions: PermissionsConfig = field(default_factory=PermissionsConfig)
    cooldowns: CooldownsConfig = field(default_factory=CooldownsConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def with_database(self, database: Path) -> Config:
        """The SQLite file ``database`` instead of any configured storage (``--db``)."""
        return replace(self, storage=replace(self.storage, database=database, url=None))


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> Config:
    """Read ``path`` (or the mapping ``data``; neither = defaults) and apply the environment.

    Raises ConfigError for a missing/unreadable file, TOML syntax, unknown keys and bad values.
    """
    env = os.environ if environ is None else environ
    raw: Mapping[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"config file {path} is not a text file (a TOML config is UTF-8 text)"
            ) from None
    elif data is not None:
        raw = data
    config = _build(Config, raw, "")
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        config = replace(config, discord=replace(config.discord, token=token))
    url = env.get(DATABASE_URL_ENV, "").strip()
    if url:
        if not re.fullmatch(STORAGE_URL_PATTERN, url):
            # never echo the value: it may hold a password
            raise ConfigError(f"{DATABASE_URL_ENV} must be a sqlite:/// or postgresql:// URL")
        config = replace(config, storage=replace(config.storage, url=url))
    check_relations(config)
    return config


def _build(cls: type[Any], raw: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'the configuration'} must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
            raise ConfigError(f"unknown setting {prefix}{key} (not a known key in {where})")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        if name not in raw:
            continue
        tp = hints[name]
        key = f"{prefix}{name}"
        if isinstance(tp, type) and is_dataclass(tp):
            values[name] = _build(tp, raw[name], f"{key}.")
        else:
            values[name] = _convert(tp, raw[name], key, dict(spec.metadata))
    for name, spec in known.items():
        if name not in values and spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError(f"{prefix}{name} is required")
    return cls(**values)


def _convert(tp: Any, value: Any, key: str, meta: dict[str, Any]) -> Any:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key, meta)
    if origin is tuple:
        message = f"{key} must be a list of {_describe(args[0], meta, plural=True)}"
        if not isinstance(value, list):
            raise ConfigError(message)
        try:
            return tuple(_convert(args[0], item, key, meta) for item in value)
        except ConfigError:
            raise ConfigError(message) from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool) or not _in_range(value, meta):
            raise ConfigError(f"{key} must be {_describe(int, meta)}")
        return value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not _in_range(value, meta):
            raise ConfigError(f"{key} must be {_describe(float, meta)}")
        return float(value)
    if tp is str:
        if meta.get("empty_is_none") and value == "":
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key} must be a non-empty string")
        if meta.get("choices"):
            if value not in meta["choices"]:
                raise ConfigError(f"{key} must be one of {', '.join(meta['choices'])}")
        elif meta.get("pattern") and not re.fullmatch(meta["pattern"], value):
            raise ConfigError(f"{key} must match {meta['pattern']!r}")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key} must be a non-empty path string")
        return Path(value).expanduser()
    raise ConfigError(f"{key} has an unsupported type")  # pragma: no cover - schema bug


def _in_range(value: float, meta: Mapping[str, Any]) -> bool:
    low, high = meta.get("min"), meta.get("max")
    return (low is None or value >= low) and (high is None or value <= high)


def _describe(tp: Any, meta: Mapping[str, Any], *, plural: bool = False) -> str:
    noun = ("integer" if tp is int else "number") + ("s" if plural else "")
    article = "" if plural else ("an " if tp is int else "a ")
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        return f"{article}{noun} between {low} and {high}"
    if low == 1 and tp is int:
        return f"{'' if plural else 'a '}positive {noun}"
    if low is not None:
        return f"{article}{noun} >= {low}"
    return f"{article}{noun}"


def _check_permission(name: str) -> None:
    """``permissions.train_permission`` must be one of discord.py's permission names: a typo
    would silently lock everyone out of /train."""
    if name == PermissionsConfig.train_permission:
        return  # the default; no need to import discord for the offline commands
    import discord  # imported here: only a changed setting needs the list

    valid = sorted(discord.Permissions.VALID_FLAGS)
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (one of: {', '.join(valid)})"
        raise ConfigError(
            f"permissions.train_permission {name!r} is not a Discord permission{hint}"
        )


def check_relations(config: Config) -> None:
    """Settings that depend on each other; ConfigError names the first broken one."""
    _check_permission(config.permissions.train_permission)
    d = config.discord
    if d.shard_ids is not None:
        if d.shard_count is None:
            raise ConfigError("discord.shard_ids needs discord.shard_count")
        bad = [s for s in d.shard_ids if s >= d.shard_count]
        if bad:
            raise ConfigError(f"discord.shard_ids must be below discord.shard_count ({bad[0]})")
        if len(set(d.shard_ids)) != len(d.shard_ids):
            raise ConfigError("discord.shard_ids must not repeat a shard id")
    lim = config.limits
    if lim.default_continuation_symbols > lim.continuation_symbols:
        raise ConfigError(
            "limits.default_continuation_symbols must not exceed limits.continuation_symbols"
        )
    if config.history.default_messages > config.history.max_messages:
        raise ConfigError("history.default_messages must not exceed history.max_messages")
    gpus = config.workers.gpus_per_job
    if gpus > 1 and not gpus.is_integer():
        raise ConfigError("workers.gpus_per_job must be a fraction of one GPU or whole GPUs")
    if (config.training.n_input or default_n_input(0)) + 1 > lim.story_symbols:
        raise ConfigError("limits.story_symbols must exceed training.n_input")
