"""A real PostgreSQL server for tests and benchmarks, started in a temporary directory.

``PostgresServer.start()`` runs ``initdb`` and ``pg_ctl start`` on a free port of 127.0.0.1 with
its unix socket in the same temporary directory; ``stop()`` stops it (``pg_ctl stop -m fast``)
and removes the directory. PostgreSQL refuses to run as root, so as root (CI) the server runs as
the ``postgres`` user (``runuser -u postgres --``) and the directory is chowned to it; otherwise
as the current user. The binaries are found on PATH or under Debian's
``/usr/lib/postgresql/<version>/bin`` (``apt-get install -y postgresql``).

``create_database()`` gives each test a fresh database cloned from a migrated template
(``CREATE DATABASE ... TEMPLATE``), which takes a few tens of milliseconds.

Faults of the server itself: ``restart()`` is ``pg_ctl restart -m fast`` (every session dropped,
the same port and data); ``frozen()`` stops the postmaster and all its processes with SIGSTOP
(connections stay open, nothing answers) and always resumes them with SIGCONT on leaving.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

SUPERUSER = "fabulist"
TEMPLATE = "fabulist_template"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl (PATH first, then the newest Debian version)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)] or [0],
    )
    if versions:
        return versions[-1].parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self, *, fast: bool = True) -> None:
        # fast: no fsync (tests kill bot processes, never the server); benches use the defaults
        self.fast = fast
        self.bindir = find_bindir()
        self.directory: Path | None = None
        self.port = 0
        self.running = False
        self._counter = 0

    @property
    def as_postgres_user(self) -> bool:
        return os.geteuid() == 0

    def _run(self, argv: Sequence[str], *, timeout: float = 60.0) -> str:
        command = list(argv)
        if self.as_postgres_user:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}): "
                f"{result.stderr or result.stdout}"
            )
        return result.stdout

    def start(self) -> PostgresServer:
        self.directory = Path(tempfile.mkdtemp(prefix="fabulist-pg-"))
        try:
            data = self.directory / "data"
            if self.as_postgres_user:
                entry = pwd.getpwnam("postgres")
                os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            self.port = free_port()
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                timeout=120,
            )
            options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
            if self.fast:
                options += " -c fsync=off -c full_page_writes=off"
            self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(self.directory / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
                timeout=90,
            )
            self.running = True
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.directory is None:
            return
        if self.running:
            with contextlib.suppress(Exception):
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.directory / "data"),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ],
                    timeout=60,
                )
            self.running = False
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: sessions are dropped, the server is back (same port)."""
        assert self.directory is not None
        self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.directory / "data"), "-l",
             str(self.directory / "server.log"), "-m", "fast", "-w", "-t", "60", "restart"],
            timeout=90,
        )  # fmt: skip

    def server_pids(self) -> list[int]:
        """The postmaster's process id, then its children's (backends and workers)."""
        assert self.directory is not None
        text = (self.directory / "data" / "postmaster.pid").read_text()
        postmaster = int(text.split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # the command name (field 2) may hold spaces: the parent is after the last ")"
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The whole server stopped (SIGSTOP) inside the block, resumed (SIGCONT) however it
        ends: connections stay open and nothing answers, as on a hung database host."""
        stopped: list[int] = []
        try:
            # the postmaster first, so that it forks no new backend while the rest are stopped
            postmaster = self.server_pids()[0]
            os.kill(postmaster, signal.SIGSTOP)
            stopped.append(postmaster)
            for pid in self.server_pids()[1:]:
                with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            yield
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql over the unix socket; returns its unaligned output."""
        assert self.directory is not None
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.directory),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout.strip()

    def create_database(self, template: str | None = TEMPLATE) -> str:
        """A new empty database (cloned from ``template`` if given); returns its URL."""
        self._counter += 1
        name = f"test_{os.getpid()}_{self._counter}"
        clause = f" TEMPLATE {template}" if template else ""
        self.psql(f"CREATE DATABASE {name}{clause}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        with contextlib.suppress(RuntimeError):
            self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def log_text(self) -> str:
        if self.directory is None:
            return ""
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""
