from __future__ import annotations

import logging
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import open_executor
from bot.config import Config, ConfigError, load_config
from bot.executors.local import LocalProcessExecutor
from bot.executors.ray_cluster import RayTrainingExecutor

REPO = Path(__file__).resolve().parents[2]


def test_no_file_gives_working_defaults() -> None:
    config = load_config(environ={})
    assert config.storage.database == Path("data/fabulist.sqlite3")
    assert config.workers.count == 1
    assert config.discord.token is None
    assert config.permissions.train_permission == "manage_channels"


def test_token_from_environment_overrides_file_and_never_shows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[discord]\ntoken = "file-token-123"\n')
    config = load_config(path, environ={"DISCORD_TOKEN": "env-token-456"})
    assert config.discord.token == "env-token-456"
    logging.getLogger("test").warning("%s %r", config, config)
    assert "env-token-456" not in repr(config) and "env-token-456" not in str(config)
    assert "env-token-456" not in caplog.text
    assert load_config(path, environ={}).discord.token == "file-token-123"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"limits": {"story_bytes": 0}}, "limits.story_bytes must be a positive integer"),
        ({"limits": {"story_bytes": "big"}}, "limits.story_bytes must be a positive integer"),
        ({"limits": {"story_bytes": True}}, "limits.story_bytes must be a positive integer"),
        ({"limits": {"colour": 1}}, "unknown setting limits.colour"),
        ({"colour": 1}, "unknown setting colour"),
        ({"training": {"layers": 3}}, "training.layers must be an integer between 1 and 2"),
        ({"training": {"max_seconds": 0}}, "training.max_seconds must be a number >= 0.1"),
        ({"training": {"optimizer": "sgd"}}, "training.optimizer must be one of adam, rmsprop"),
        ({"workers": {"count": 0}}, "workers.count must be an integer between 1 and 64"),
        ({"workers": {"warm": "yes"}}, "workers.warm must be true or false"),
        ({"cache": {"models": -1}}, "cache.models must be a positive integer"),
        ({"workers": {"backend": "celery"}}, "workers.backend must be one of local, ray"),
        ({"workers": {"gpus_per_job": 1.5}}, "workers.gpus_per_job must be a fraction of one GPU"),
        ({"workers": {"gpus_per_job": -1}}, "workers.gpus_per_job must be a number between"),
        ({"workers": {"cpus_per_job": 0}}, "workers.cpus_per_job must be a number between"),
        ({"workers": {"max_concurrent_jobs": 0}}, "workers.max_concurrent_jobs must be"),
        ({"workers": {"ray_keras_backend": "torch"}}, "workers.ray_keras_backend must be one of"),
        ({"discord": "token"}, "discord must be a table"),
        ({"discord": {"shard_ids": [0, 1]}}, "discord.shard_ids needs discord.shard_count"),
        ({"discord": {"shard_count": 2, "shard_ids": [2]}}, "discord.shard_ids must be below"),
        ({"discord": {"api_base_url": "ftp://x"}}, "discord.api_base_url must match"),
        (
            {"permissions": {"train_role_ids": [1, "x"]}},
            "permissions.train_role_ids must be a list of positive integers",
        ),
        ({"permissions": {"train_permission": "Manage Channels"}}, "permissions.train_permission"),
        ({"storage": {"database": ""}}, "storage.database must be a non-empty path"),
        ({"cooldowns": {"continue_seconds": float("nan")}}, "cooldowns.continue_seconds"),
        (
            {"limits": {"default_continuation_symbols": 50, "continuation_symbols": 10}},
            "limits.default_continuation_symbols must not exceed",
        ),
    ],
)
def test_bad_values_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_config(data=data, environ={})


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits\nstory_bytes = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def _keys(cls: type[Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(default):
            out |= _keys(type(default), f"{prefix}{f.name}.")
        else:
            out.add(f"{prefix}{f.name}")
    return out


def test_example_config_documents_every_setting_and_loads() -> None:
    example = REPO / "config.example.toml"
    text = example.read_text()
    for key in _keys(Config):
        section, name = key.split(".")
        assert f"[{section}]" in text, section
        assert f"{name} =" in text, key
    # Commented-out keys must be valid when uncommented.
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line else line for line in text.splitlines()
    )
    load_config(data=tomllib.loads(uncommented), environ={})
    load_config(example, environ={})


def test_storage_url_environment_password_file_and_db_override(tmp_path: Path) -> None:
    from bot.app import storage_url

    assert load_config(environ={}).storage.backend == "sqlite"
    assert storage_url(load_config(environ={}).storage) == "sqlite:///data/fabulist.sqlite3"
    secret = tmp_path / "pw"
    secret.write_text("p@ss:word\n")
    env = {"FABULIST_DATABASE_URL": "postgresql://fab@db.internal:5432/tales"}
    config = load_config(data={"storage": {"password_file": str(secret)}}, environ=env)
    assert config.storage.backend == "postgresql"
    assert storage_url(config.storage) == "postgresql://fab:p%40ss%3Aword@db.internal:5432/tales"
    with_password = load_config(environ={"FABULIST_DATABASE_URL": "postgres://u:hunter2@h/d"})
    assert "hunter2" not in repr(with_password) and "hunter2" not in str(with_password)
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"FABULIST_DATABASE_URL": "mysql://u:hunter2@h/d"})
    assert "hunter2" not in str(caught.value)
    # --db names a SQLite file whatever the configured storage
    assert config.with_database(Path("x.sqlite3")).storage.backend == "sqlite"
    sqlite = load_config(data={"storage": {"url": "sqlite:///var/tales.sqlite3"}}, environ={})
    assert sqlite.storage.sqlite_path == Path("var/tales.sqlite3")
    with pytest.raises(ConfigError, match=r"storage\.url must match"):
        load_config(data={"storage": {"url": "sqlite://relative"}}, environ={})


def test_ray_settings_and_the_wired_executor() -> None:
    config = load_config(
        data={
            "workers": {
                "backend": "ray",
                "ray_address": "",
                "cpus_per_job": 0.5,
                "gpus_per_job": 0.25,
                "max_concurrent_jobs": 8,
                "ray_keras_backend": "jax",
            }
        },
        environ={},
    )
    assert config.workers.ray_address is None  # empty: a local cluster started by the bot
    executor = open_executor(config)
    assert isinstance(executor, RayTrainingExecutor)
    assert executor.capacity == 8
    settings = executor.settings
    assert (settings.address, settings.cpus_per_job, settings.gpus_per_job) == (None, 0.5, 0.25)
    env = settings.env_vars()
    assert env["KERAS_BACKEND"] == "jax" and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    address = load_config(data={"workers": {"ray_address": "ray://head:10001"}}, environ={})
    assert address.workers.ray_address == "ray://head:10001"
    assert load_config(data={"workers": {"gpus_per_job": 2}}, environ={}).workers.gpus_per_job == 2
    assert isinstance(open_executor(load_config(environ={})), LocalProcessExecutor)
