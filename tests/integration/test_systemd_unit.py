"""deploy/systemd/mirror.service passes ``systemd-analyze verify`` with no warning, runs as its
own unprivileged user with a state directory, and its exposure score (``systemd-analyze
security``) stays at "OK" (2.0 or less of 10)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "mirror.service"
INSTALLED_BINARY = "/opt/mirror/bin/mirror"
# systemd-analyze security --threshold is on a 0-100 scale: 20 = exposure 2.0, "OK".
EXPOSURE_THRESHOLD = 20


def settings() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit as installed, with ExecStart pointing at this checkout's ``mirror`` (verify
    checks that the binary exists; /opt/mirror is where the unit's instructions put it)."""
    analyze = shutil.which("systemd-analyze")
    binary = shutil.which("mirror")
    if analyze is None:
        pytest.skip("needs systemd-analyze (Debian package systemd) on PATH")
    if binary is None:
        pytest.skip("needs the mirror console script on PATH (pip install -e .)")
    path = tmp_path / "mirror.service"
    text = UNIT.read_text()
    assert INSTALLED_BINARY in text
    path.write_text(text.replace(INSTALLED_BINARY, binary))
    return path


def test_the_unit_verifies_without_a_warning(unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_unit_is_hardened_to_an_ok_exposure(unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--threshold={EXPOSURE_THRESHOLD}",
         str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_the_unit_runs_unprivileged_with_a_state_directory_and_a_read_only_system() -> None:
    values = settings()
    assert values["DynamicUser"] == ["yes"]
    assert values["StateDirectory"] == ["mirror"]
    assert values["Environment"] == ["MIRROR_STORAGE_DATA_DIR=/var/lib/mirror/data"]
    for key, expected in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert values[key] == [expected], key
    assert values["ExecStart"] == [f"{INSTALLED_BINARY} serve --config /etc/mirror/mirror.toml"]
