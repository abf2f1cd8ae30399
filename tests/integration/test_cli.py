"""The ``mirror`` command as an operator runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.peers.ports import free_port

pytestmark = pytest.mark.integration

MIRROR = [sys.executable, "-m", "mirror"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MIRROR, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["serve", "--listen", "nonsense"], {}, "server.listen"),
        (["serve", "--upstream", "no-equals-sign"], {}, "expected HOST=URL"),
        (["serve", "--upstream", "a.test=ftp://x"], {}, "upstreams[4].url"),
        (["serve", "--default-upstream", "nowhere.test"], {}, "default_upstream"),
        (["serve"], {"MIRROR_CACHE_TAG_TTL": "soon"}, "cache.tag_ttl"),
        (["serve", "--config", "/nonexistent.toml"], {}, "config file not found"),
    ],
    ids=[
        "bad-listen",
        "bad-upstream-flag",
        "bad-upstream-url",
        "unknown-default",
        "bad-env",
        "missing-file",
    ],
)
def test_bad_configuration_exits_non_zero_naming_the_key(
    args: list[str], env: dict[str, str], message: str
) -> None:
    done = run(*args, env=env)
    assert done.returncode != 0
    assert message in done.stderr


def test_serve_logs_where_it_listens_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "mirror.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[encryption]\nkek_file = "{tmp_path / "kek"}"\n'
    )
    proc = subprocess.Popen(
        [*MIRROR, "serve", "--config", str(config)], stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(2)]
        assert "created key file" in lines[0]
        assert f"listening on http://127.0.0.1:{port}" in lines[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/") as resp:
            assert resp.status == 200
        assert (tmp_path / "data" / "metadata").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        done = run(
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path),
            env={"MIRROR_ENCRYPTION_KEK_FILE": str(tmp_path / "kek")},
        )
    assert done.returncode == 1
    assert "cannot serve" in done.stderr
    assert time.monotonic() - started < 30


def test_demo_pulls_cold_then_warm_offline() -> None:
    done = run("demo")
    assert done.returncode == 0, done.stderr
    assert "cold pull" in done.stdout and "warm pull" in done.stdout
    assert "blob cache hits: 5" in done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("origin registry (in-process) on http://127.0.0.1:")
    assert lines[1] == "seeded demo/app:v1 with 4 layers (16.8 MB)"
    assert lines[2].startswith("mirror on http://127.0.0.1:")
    assert lines[5] == "blob cache hits: 5; bytes fetched upstream: 16783872 (each blob once)"


def test_demo_needs_nothing_outside_the_installed_package() -> None:
    """What the wheel ships is enough: no ``tests`` module (and so no docker-registry)."""
    script = (
        "import sys\n"
        "from mirror.cli.main import main\n"
        "status = main(['demo'])\n"
        "outside = sorted(m for m in sys.modules if m.split('.')[0] == 'tests')\n"
        "print('imported from tests:', outside)\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "imported from tests: []" in done.stdout


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRROR_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [*MIRROR, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


def test_the_default_key_file_is_beside_the_data_directory_and_found_from_anywhere(
    tmp_path: Path,
) -> None:
    data = tmp_path / "srv" / "data"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    created = run_in(tmp_path, "keys", "list", "--data-dir", "srv/data")
    assert created.returncode == 0, created.stderr
    kek = tmp_path / "srv" / "data.kek"
    assert kek.is_file() and not (tmp_path / "mirror.kek").exists()
    assert f"created key file {kek} " in created.stderr  # the absolute path
    listed = run_in(elsewhere, "keys", "list", "--data-dir", str(data))
    assert listed.returncode == 0, listed.stderr
    assert "(current): 0 objects" in listed.stdout and "created" not in listed.stderr


def test_a_cache_keyed_at_the_former_default_is_refused_naming_both_paths(
    tmp_path: Path,
) -> None:
    # A cache made before the key file moved: its key is ./mirror.kek of where it started.
    made = run_in(tmp_path, "keys", "list", "--data-dir", "data", "--config", str(former(tmp_path)))
    assert made.returncode == 0, made.stderr
    before = (tmp_path / "mirror.kek").read_text()

    refused = run_in(tmp_path, "keys", "list", "--data-dir", "data")
    assert refused.returncode == 2
    assert f"no key file at {tmp_path / 'data.kek'}" in refused.stderr
    assert f"{tmp_path / 'mirror.kek'} (the former default" in refused.stderr
    assert not (tmp_path / "data.kek").exists()
    elsewhere = run_in(tmp_path / "data", "keys", "list", "--data-dir", str(tmp_path / "data"))
    assert elsewhere.returncode == 2
    assert "not at the former default" in elsewhere.stderr
    assert not (tmp_path / "data.kek").exists()
    assert (tmp_path / "mirror.kek").read_text() == before

    (tmp_path / "mirror.kek").rename(tmp_path / "data.kek")
    moved = run_in(tmp_path / "data", "keys", "list", "--data-dir", str(tmp_path / "data"))
    assert moved.returncode == 0, moved.stderr


def former(tmp_path: Path) -> Path:
    config = tmp_path / "former.toml"
    config.write_text('[encryption]\nkek_file = "./mirror.kek"\n')
    return config
