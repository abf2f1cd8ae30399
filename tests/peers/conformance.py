"""Run the OCI distribution-spec conformance suites (two prebuilt binaries) against a registry.

The binaries are not installable from a package registry: they are looked up in
``OCI_CONFORMANCE_DIR`` or ``../shared/tools/conformance`` beside the checkout, and
:func:`conformance_dir` answers ``None`` when neither holds them (a test then skips and says
why). ``v1.1.1`` is a ginkgo binary configured by ``OCI_*`` variables that writes
``junit.xml`` into ``OCI_REPORT_DIR``; ``main`` (the 2026 redesign) writes ``results.yaml`` and
``junit.xml`` into ``OCI_RESULTS_DIR`` and records unsupported optional features as
"Disabled" rather than failing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

V1_1_1 = "oci-conformance-v1.1.1"
MAIN = "oci-conformance-main"
CONFORMANCE_TIMEOUT = 600.0
_CHECKOUT = Path(__file__).resolve().parents[2]


def conformance_dir(environ: dict[str, str] | None = None) -> Path | None:
    """The directory holding both suites, or ``None`` when they are not on this machine."""
    env = os.environ if environ is None else environ
    # ``../shared`` of the checkout (a worktree sits one level deeper, so look upwards).
    shared = [str(up / "shared" / "tools" / "conformance") for up in _CHECKOUT.parents]
    for candidate in (env.get("OCI_CONFORMANCE_DIR"), *shared):
        if candidate and all((Path(candidate) / name).is_file() for name in (V1_1_1, MAIN)):
            return Path(candidate)
    return None


@dataclass
class SuiteResult:
    """What one run of a suite reported: counts, and the name and message of each failure."""

    returncode: int
    tests: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    output: str = ""

    @property
    def passed(self) -> int:
        """Specs that ran and passed."""
        return self.tests - len(self.failures) - self.skipped


def read_junit(path: Path, returncode: int, output: str) -> SuiteResult:
    """A :class:`SuiteResult` from a JUnit XML report (every ``testcase`` element)."""
    result = SuiteResult(returncode, output=output)
    for case in ET.parse(path).getroot().iter("testcase"):
        result.tests += 1
        # ginkgo (v1.1.1) nests <failure>; the redesign sets status="failure" with <system-out>.
        failed = case.find("failure")
        if failed is None:
            failed = case.find("error")
        if failed is not None or case.get("status") in ("failure", "error"):
            text = failed.get("message") or failed.text or "" if failed is not None else ""
            text = text or (case.findtext("system-out") or "")
            result.failures[case.get("name", "?")] = text.strip()[:2000]
        elif case.find("skipped") is not None or case.get("status") in ("skipped", "disabled"):
            result.skipped += 1
    return result


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


async def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CONFORMANCE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    output = out.decode(errors="replace")
    _write(cwd / "output.log", output)  # the full log, beside the reports
    return (proc.returncode if proc.returncode is not None else -1), output


@dataclass(frozen=True)
class Target:
    """Where the suites push: a registry URL, two repositories and a login for them."""

    url: str
    repo: str
    other_repo: str
    username: str = ""
    password: str = ""


async def run_v1_1_1(tools: Path, target: Target, report_dir: Path) -> SuiteResult:
    """The v1.1.1 suite with all four workflows (pull, push, discovery, management)."""
    _make_dir(report_dir)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(report_dir),
        "OCI_ROOT_URL": target.url,
        "OCI_NAMESPACE": target.repo,
        "OCI_CROSSMOUNT_NAMESPACE": target.other_repo,
        "OCI_USERNAME": target.username,
        "OCI_PASSWORD": target.password,
        "OCI_TEST_PULL": "1",
        "OCI_TEST_PUSH": "1",
        "OCI_TEST_CONTENT_DISCOVERY": "1",
        "OCI_TEST_CONTENT_MANAGEMENT": "1",
        "OCI_REPORT_DIR": str(report_dir),
        "OCI_HIDE_SKIPPED_WORKFLOWS": "0",
        # OCI_DEBUG=1 in the test's environment logs every request and response.
        "OCI_DEBUG": os.environ.get("OCI_DEBUG", "0"),
    }
    argv = [str(tools / V1_1_1), "-ginkgo.no-color", "-ginkgo.v"]
    code, output = await _run(argv, env, report_dir)
    return read_junit(report_dir / "junit.xml", code, output)


async def run_main(
    tools: Path, target: Target, results_dir: Path, options: str = ""
) -> SuiteResult:
    """The main-branch redesign with pushes on; ``options`` is YAML merged over its defaults
    (``OCI_CONFIGURATION``), to switch optional APIs on or off."""
    _make_dir(results_dir)
    extra = {}
    if options:
        extra["OCI_CONFIGURATION"] = _write(results_dir / "options.yaml", options)
    env = {
        **extra,
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(results_dir),
        "OCI_REGISTRY": target.url.split("://", 1)[1],
        "OCI_TLS": "disabled",
        "OCI_VERSION": "1.1",
        "OCI_RESULTS_DIR": str(results_dir),
        "OCI_REPO1": target.repo,
        "OCI_REPO2": target.other_repo,
        "OCI_USERNAME": target.username,
        "OCI_PASSWORD": target.password,
    }
    code, output = await _run([str(tools / MAIN)], env, results_dir)
    return read_junit(results_dir / "junit.xml", code, output)
