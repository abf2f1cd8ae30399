"""The clients that measure: curl to /dev/null, skopeo, ctr, the load generator, and an RSS
sampler. Every call is bounded by a timeout; children are killed if we are interrupted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from benchmarks.procs import stop_process
from benchmarks.servers import REPO_ROOT
from tests.peers.containerd import Containerd
from tests.peers.skopeo import skopeo_copy

CURL_FORMAT = "%{http_code} %{size_download} %{time_total}"


@dataclass(frozen=True)
class Download:
    """One curl download: HTTP status, bytes received, seconds."""

    status: int
    size: int
    seconds: float

    @property
    def rate(self) -> float:
        """Bytes per second."""
        return self.size / self.seconds if self.seconds > 0 else 0.0


def curl_argv(url: str, timeout: float) -> list[str]:
    """``curl`` fetching ``url`` to /dev/null and printing status, size and time."""
    return ["curl", "-sS", "-o", "/dev/null", "--max-time", str(timeout), "-w", CURL_FORMAT, url]


def _parse(out: str) -> Download:
    status, size, seconds = out.split()
    return Download(int(status), int(size), float(seconds))


def curl(url: str, timeout: float) -> Download:
    """One download; raises ``RuntimeError`` unless it answered 200."""
    done = subprocess.run(
        curl_argv(url, timeout), capture_output=True, text=True, timeout=timeout + 5, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"curl {url} failed ({done.returncode}): {done.stderr.strip()}")
    result = _parse(done.stdout)
    if result.status != 200:
        raise RuntimeError(f"curl {url} answered {result.status}")
    return result


def curl_many(url: str, count: int, timeout: float) -> tuple[float, list[Download]]:
    """``count`` concurrent downloads of ``url``; returns the wall time from the first start
    to the last exit and each download. Raises ``RuntimeError`` if any failed."""
    return curl_each([url] * count, timeout)


def curl_each(urls: list[str], timeout: float) -> tuple[float, list[Download]]:
    """One download of each of ``urls``, all at once; returns the wall time from the first
    start to the last exit and each download. Raises ``RuntimeError`` if any failed."""
    procs: list[subprocess.Popen[bytes]] = []
    count = len(urls)
    try:
        started = time.perf_counter()
        for url in urls:
            procs.append(
                subprocess.Popen(
                    curl_argv(url, timeout), stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
            )
        outputs = [p.communicate(timeout=timeout + 5) for p in procs]
        wall = time.perf_counter() - started
    finally:
        for p in procs:
            stop_process(p, timeout=1.0)
    failed = [
        (p.returncode, err) for p, (_, err) in zip(procs, outputs, strict=True) if p.returncode
    ]
    if failed:
        raise RuntimeError(f"{len(failed)} of {count} curls failed, e.g. {failed[0]!r}")
    downloads = [_parse(out.decode()) for out, _ in outputs]
    bad = [d for d in downloads if d.status != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} of {count} curls answered {bad[0].status}")
    return wall, downloads


def skopeo_pull(ref: str, out_dir: Path) -> float:
    """``skopeo copy docker://REF dir:OUT`` into a fresh directory; returns seconds."""
    shutil.rmtree(out_dir, ignore_errors=True)
    started = time.perf_counter()
    skopeo_copy(f"docker://{ref}", f"dir:{out_dir}", "--src-tls-verify=false")
    seconds = time.perf_counter() - started
    shutil.rmtree(out_dir, ignore_errors=True)
    return seconds


def ctr_fetch(ref: str, base_dir: Path) -> tuple[float, int]:
    """``ctr content fetch --plain-http REF`` with a brand-new containerd (empty content
    store) under ``base_dir``; returns seconds (of the fetch only) and blobs in the store."""
    shutil.rmtree(base_dir, ignore_errors=True)
    hosts = base_dir / "hosts"
    hosts.mkdir(parents=True)
    try:
        with Containerd(base_dir / "ctd", namespace="bench") as containerd:
            # Global --debug turns off ctr's progress display, whose 100 ms ticker would
            # otherwise quantise the time (ctr exits on a tick after the fetch ended).
            argv = ["--debug", "content", "fetch", "--hosts-dir", str(hosts), "--plain-http", ref]
            started = time.perf_counter()
            done = containerd.ctr(*argv)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"ctr content fetch {ref} failed: {done.stderr.strip()}")
            count = len(containerd.content_digests())
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)
    return seconds, count


def loadgen(
    url: str, method: str, headers: list[str], connections: int, duration: float, warmup: float
) -> dict[str, object]:
    """Run :mod:`benchmarks.loadgen` in its own process; returns its JSON summary."""
    argv = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--url",
        url,
        "--method",
        method,
        "--connections",
        str(connections),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    for header in headers:
        argv += ["--header", header]
    done = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=duration + warmup + 30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def image_pulls(
    base: str, repo: str, tag: str, clients: int, verify: bool, timeout: float
) -> dict[str, Any]:
    """``clients`` concurrent whole-image pulls by :mod:`benchmarks.imagepull` in its own
    process; returns its JSON summary (``wall``, ``bytes``, ``blobs``, ``bad``)."""
    argv = [sys.executable, "-m", "benchmarks.imagepull", "--base", base, "--repo", repo]
    argv += ["--tag", tag, "--clients", str(clients)] + (["--verify"] if verify else [])
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"imagepull failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["bad"]:
        raise RuntimeError(f"image pulls from {base} went wrong: {result['bad'][:3]}")
    return result


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) and of its live child processes
    (nginx's workers), from ``/proc``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        # fields[1] is the parent PID; utime and stime are fields 14 and 15 of stat(5).
        if fields is not None and (int(entry) == pid or int(fields[1]) == pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def proc_status_kib(pid: int, field_name: str) -> int:
    """A ``/proc/PID/status`` field in KiB (``VmRSS``, ``VmHWM``), 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class PeakSampler:
    """Samples ``measure()`` every ``interval`` seconds in a thread while entered; ``peak`` is
    the largest value seen, ``samples`` how many were taken."""

    def __init__(self, measure: Callable[[], int], interval: float) -> None:
        self.measure = measure
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class RssSampler(PeakSampler):
    """Samples ``VmRSS`` of ``pid`` every ``interval`` seconds in a thread; ``peak`` in KiB."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(lambda: proc_status_kib(pid, "VmRSS"), interval)
        self.pid = pid


@dataclass(frozen=True)
class PushRun:
    """What :mod:`benchmarks.pushclient` reported: seconds per push (and of its final
    ``PUT``), wall time, and how many
    blobs the registry then answered ``HEAD`` for with the right size."""

    seconds: list[float]
    last_put: list[float]
    size: int
    wall: float
    verified: int
    digests: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Bytes per second of one push (the first)."""
        return self.size / self.seconds[0] if self.seconds[0] > 0 else 0.0

    @property
    def aggregate(self) -> float:
        """Bytes per second of all pushes together."""
        return len(self.seconds) * self.size / self.wall if self.wall > 0 else 0.0


def push_blobs(
    url: str,
    repo: str,
    size: int,
    *,
    chunk: int = 0,
    concurrency: int = 1,
    salt: int = 0,
    credentials: tuple[str, Path] | None = None,
    verify: bool = True,
    timeout: float = 300.0,
) -> PushRun:
    """Run :mod:`benchmarks.pushclient` in its own process (``chunk`` 0: monolithic)."""
    argv = [sys.executable, "-m", "benchmarks.pushclient", "--url", url, "--repo", repo]
    argv += ["--size", str(size), "--chunk", str(chunk), "--concurrency", str(concurrency)]
    argv += ["--salt", str(salt), "--timeout", str(timeout)]
    if credentials is not None:
        argv += ["--login", credentials[0], "--token-file", str(credentials[1])]
    if not verify:
        argv.append("--no-verify")
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"push to {url}/{repo} failed: {done.stderr.strip()[-2000:]}")
    doc = json.loads(done.stdout)
    return PushRun(
        [float(p["seconds"]) for p in doc["pushes"]],
        [float(p["last_put"]) for p in doc["pushes"]],
        size,
        float(doc["wall"]),
        int(doc["verified"]),
        [str(d) for d in doc["digests"]],
    )


def skopeo_push(source: str, ref: str, credentials: tuple[str, str] | None) -> float:
    """``skopeo copy SOURCE docker://REF`` (``SOURCE`` e.g. ``oci:DIR:TAG``, plain HTTP);
    returns seconds."""
    options = ["--dest-tls-verify=false"]
    if credentials is not None:
        options.append(f"--dest-creds={credentials[0]}:{credentials[1]}")
    started = time.perf_counter()
    skopeo_copy(source, f"docker://{ref}", *options)
    return time.perf_counter() - started


def manifest_digest(ref: str, credentials: tuple[str, str] | None) -> str:
    """The digest a registry answers for ``REF``'s manifest (``skopeo inspect``)."""
    argv = ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}"]
    if credentials is not None:
        argv.append(f"--creds={credentials[0]}:{credentials[1]}")
    done = subprocess.run(
        [*argv, f"docker://{ref}"], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"skopeo inspect {ref} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _range_get(conn: Any, path: str, start: int, end: int, errors: list[str]) -> bytes:
    """One ``Range: bytes=start-end`` GET on ``conn``; a wrong answer is added to ``errors``."""
    conn.request("GET", path, headers={"Range": f"bytes={start}-{end}"})
    resp = conn.getresponse()
    body: bytes = resp.read()
    if resp.status != 206 or len(body) != end + 1 - start:
        errors.append(f"piece {start}: {resp.status}, {len(body)} bytes")
    return body


@dataclass(frozen=True)
class RangedPull:
    """A chunked ``Range`` pull: its wall time, when its first wave (the first ``workers``
    pieces) had all completed, and the sha256 of the pieces in order."""

    seconds: float
    first_wave: float
    digest: str


def ranged_pull(url: str, size: int, piece: int, workers: int, timeout: float) -> RangedPull:
    """Fetch ``url`` (``size`` bytes) as containerd 2.1 / SOCI do: ``workers`` concurrent
    ``Range`` requests of ``piece`` bytes, each worker taking the next piece when done.
    Raises ``RuntimeError`` unless every piece answered 206 with exactly its bytes."""
    import hashlib
    import http.client
    import queue
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for start in range(0, size, piece):
        todo.put(start)
    got: dict[int, bytes] = {}
    # When each piece had been received, from the start.
    done_at: dict[int, float] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
        try:
            while not errors:
                try:
                    start = todo.get_nowait()
                except queue.Empty:
                    return
                body = _range_get(conn, parts.path, start, min(start + piece, size) - 1, errors)
                with lock:
                    got[start] = body
                    done_at[start] = time.perf_counter() - started
        except OSError as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"ranged pull failed: {errors[:3]}")
    first_wave = max(done_at[start] for start in sorted(done_at)[:workers])
    whole = hashlib.sha256()
    for start in sorted(got):
        whole.update(got.pop(start))
    return RangedPull(wall, first_wave, "sha256:" + whole.hexdigest())
