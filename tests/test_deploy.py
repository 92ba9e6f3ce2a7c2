"""The container: deploy/entrypoint.sh run without Docker (token and volume checks, the default
database on the data volume, the healthcheck), and the image build where Docker is usable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"


def entrypoint(
    cwd: Path, *args: str, token: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint as the image does (``sh``, its working directory holding data/)."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),  # this tree's bot/, as the image has it installed
        "FABULIST_PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **env,
    }
    if token is not None:
        environ["DISCORD_TOKEN"] = token
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("args", [(), ("run",), ("sync",)])
def test_no_token_is_a_clear_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = entrypoint(tmp_path, *args)
    assert done.returncode == 64
    assert "DISCORD_TOKEN is not set" in done.stderr and "Developer Portal" in done.stderr
    assert done.stdout == "" and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "token",
    ["", "  ", '"abc.def.ghi"', "abc def.ghi.jkl", "abc.def", "a.b.c.d", "abc..def", ".a.b"],
)
def test_malformed_token_is_refused_before_python_starts(tmp_path: Path, token: str) -> None:
    done = entrypoint(tmp_path, "run", token=token)
    assert done.returncode == 64, done.stderr
    assert "DISCORD_TOKEN" in done.stderr
    assert not token.strip() or token.strip() not in done.stderr  # a token is never echoed


def test_data_directory_must_be_writable(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    done = entrypoint(tmp_path, "status")
    assert done.returncode == 73
    assert "data directory data is not a writable directory" in done.stderr


def test_other_commands_run_with_the_database_on_the_data_volume(tmp_path: Path) -> None:
    done = entrypoint(tmp_path, "status", "--channel", "demo")
    assert done.returncode == 0, done.stderr
    assert "no trained model yet" in done.stdout
    assert (tmp_path / "data" / "fabulist.sqlite3").is_file()


def test_healthcheck_reads_the_age_of_the_health_file(tmp_path: Path) -> None:
    missing = entrypoint(tmp_path, "healthcheck")
    assert missing.returncode == 1 and "not connected to Discord" in missing.stderr
    health = tmp_path / "data" / ".health"
    health.parent.mkdir()
    health.write_text(f"{time.time():.0f}\n")
    assert entrypoint(tmp_path, "healthcheck").returncode == 0
    old = time.time() - 300
    os.utime(health, (old, old))
    stale = entrypoint(tmp_path, "healthcheck")
    assert stale.returncode == 1 and "last connected to Discord 30" in stale.stderr
    assert entrypoint(tmp_path, "healthcheck", FABULIST_HEALTH_MAX_AGE="600").returncode == 0


def _docker_usable() -> str | None:
    """None if ``docker build`` can run here, else why not."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return f"docker cannot reach an engine: {info.stderr.strip()[:200]}"
    return None


@pytest.mark.slow
def test_image_builds_and_its_entrypoint_runs(tmp_path: Path) -> None:
    why = _docker_usable()
    if why is not None:
        pytest.skip(f"Docker is not usable here ({why}); the entrypoint tests above still run")
    tag = f"fabulist-test:{os.getpid()}"
    try:
        subprocess.run(
            ["docker", "build", "-f", "deploy/Dockerfile", "-t", tag, "."],
            cwd=REPO,
            check=True,
            timeout=1800,
        )
        user = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "id", tag, "-un"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert user.stdout.strip() == "fabulist"
        no_token = subprocess.run(
            ["docker", "run", "--rm", tag], capture_output=True, text=True, check=False
        )
        assert no_token.returncode == 64 and "DISCORD_TOKEN is not set" in no_token.stderr
        status = subprocess.run(
            ["docker", "run", "--rm", tag, "status"], capture_output=True, text=True, check=False
        )
        assert status.returncode == 0, status.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
