"""Describe the machine and the software versions a run used."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata

from benchmarks.servers import REPO_ROOT


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, str]:
    """nproc, memory, CPU model, kernel, date, and the versions of everything measured."""
    commit = _first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "mirror"])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "memory": _memory(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "mirror commit": commit + (" (mirror/ modified)" if dirty not in ("", "unknown") else ""),
        "aiohttp": _package("aiohttp"),
        "uvloop": _package("uvloop"),
        "cryptography": _package("cryptography"),
        "docker-registry": _first_line(["docker-registry", "--version"]),
        "nginx": _first_line(["nginx", "-v"]),
        "curl": " ".join(_first_line(["curl", "--version"]).split()[:2]),
        "skopeo": _first_line(["skopeo", "--version"]),
        "ctr": _first_line(["ctr", "--version"]),
    }
