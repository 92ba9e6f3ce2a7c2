"""Run a discord.py program (our bot, or the self-test client) as a subprocess against the fake."""

# ruff: noqa: ASYNC109  # the harness API takes explicit timeouts so failures say what was awaited

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.fake_discord.server import FakeDiscord

REPO_ROOT = Path(__file__).resolve().parents[2]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{text}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(config: Mapping[str, Any]) -> str:
    """A small TOML writer: top-level scalars, then [tables] and nested [a.b] tables."""
    lines: list[str] = []

    def table(prefix: str, items: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in items.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in items.items() if isinstance(v, Mapping)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            if value is not None:
                lines.append(f"{key} = {toml_value(value)}")
        if scalars:
            lines.append("")
        for key, value in tables.items():
            table(f"{prefix}.{key}" if prefix else key, value)

    table("", config)
    return "\n".join(lines) + "\n"


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class BotProcess:
    """A subprocess connected to the fake; output goes to ``log_path``."""

    def __init__(
        self,
        fake: FakeDiscord,
        argv: Sequence[str],
        *,
        log_path: Path,
        config_path: Path | None = None,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.fake = fake
        self.argv = list(argv)
        self.log_path = log_path
        self.config_path = config_path
        self.config = dict(config or {})
        self.cwd = cwd
        self.env = dict(os.environ)
        # bot/config.py lets DISCORD_TOKEN override the file: never let a developer's leak in
        self.env.pop("DISCORD_TOKEN", None)
        self.env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
        self.env.update(env or {})
        self.proc: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.starts = 0

    @property
    def db_path(self) -> Path | None:
        storage = self.config.get("storage", {})
        if isinstance(storage, Mapping) and "database" in storage:
            return Path(storage["database"])
        return None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(
        self,
        *,
        wait_identify: bool = True,
        wait_commands_for: int | bool | None = False,
        command_names: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> None:
        """Start the process; wait for its IDENTIFY and optionally its command sync.

        ``wait_commands_for``: a guild id (guild sync), ``None`` (global sync) or ``False``.
        """
        identifies = self.fake.identify_count
        syncs = len(self.fake.command_syncs)
        self.starts += 1
        with self.log_path.open("ab") as fh:
            fh.write(f"\n===== start {self.starts}: {' '.join(self.argv)}\n".encode())
            fh.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=str(self.cwd),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fh,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        proc = self.proc

        async def watch() -> None:
            await proc.wait()
            self.fake.notify()

        self._watcher = asyncio.create_task(watch())

        def check(pred: bool) -> bool:
            if proc.returncode is not None:
                raise AssertionError(
                    f"process exited with {proc.returncode} during startup:\n{self.log_tail()}"
                )
            return pred

        if wait_identify:
            await self.fake.wait_until(
                lambda: check(self.fake.identify_count > identifies), timeout, "bot IDENTIFY"
            )
        if wait_commands_for is not False:
            guild_id = wait_commands_for if isinstance(wait_commands_for, int) else None
            wanted = set(command_names)

            def synced() -> bool:
                new = self.fake.command_syncs[syncs:]
                return check(
                    any(g == guild_id for g, _ in new)
                    and wanted <= set(self.fake.commands.get(guild_id, {}))
                )

            await self.fake.wait_until(synced, timeout, f"command sync for {guild_id}")

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) to the process only."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        return self.proc.returncode

    async def restart(self, **start_kwargs: Any) -> None:
        await self.stop()
        await self.start(**start_kwargs)

    def log_text(self) -> str:
        """The process output so far, without ANSI colour codes."""
        if not self.log_path.exists():
            return ""
        return _ANSI.sub("", self.log_path.read_text(errors="replace"))

    async def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until ``text`` appears in the output (polled: a file has no change events)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while text not in (out := self.log_text()):
            if loop.time() > deadline:
                raise AssertionError(f"{text!r} not in output after {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        return out

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def assert_log_clean(self, *, allow: Sequence[str] = ()) -> None:
        """Fail if the output holds a traceback or an ignored exception (minus ``allow`` lines)."""
        bad = [
            line
            for line in self.log_text().splitlines()
            if ("Traceback" in line or "Ignoring exception" in line or " ERROR" in line)
            and not any(a in line for a in allow)
        ]
        if bad:
            raise AssertionError(
                "errors in process output:\n" + "\n".join(bad) + "\n" + self.log_tail()
            )


def bot_config(
    fake: FakeDiscord, tmp_path: Path, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The config dict for ``python -m bot --config CONFIG run``: fake URLs, token, a fresh DB.

    Keys follow bot/config.py: ``[discord] token/api_base_url/gateway_url`` and
    ``[storage] database``.
    """
    base: dict[str, Any] = {
        "discord": {
            "token": fake.token,
            "api_base_url": fake.api_base_url,
            "gateway_url": fake.gateway_url,
        },
        "storage": {"database": str(tmp_path / "fabulist.sqlite3")},
    }
    return merge(base, extra or {})


def make_bot_process(
    fake: FakeDiscord,
    tmp_path: Path,
    config: Mapping[str, Any] | None = None,
    *,
    args: Sequence[str] = ("run",),
    env: Mapping[str, str] | None = None,
    name: str = "bot",
) -> BotProcess:
    """Write ``tmp_path/<name>.toml`` and prepare ``python -m bot --config it run``."""
    full = bot_config(fake, tmp_path, config)
    config_path = tmp_path / f"{name}.toml"
    config_path.write_text(dump_toml(full))
    argv = [sys.executable, "-m", "bot", "--config", str(config_path), *args]
    return BotProcess(
        fake, argv, log_path=tmp_path / f"{name}.log", config_path=config_path, config=full, env=env
    )
