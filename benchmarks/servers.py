"""The servers under test: our mirror (a separate ``python -m mirror serve`` process) and an
nginx ``sendfile`` ceiling. The registries come from :mod:`tests.peers.registry`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procs import Processes, stop_process, wait_http
from tests.peers.ports import free_port

START_TIMEOUT = 20.0
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class MirrorVariant:
    """One way to run the mirror: a label for the tables plus extra CLI flags and TOML.

    Add a variant (e.g. encryption off) by listing another one in :func:`mirror_variants`.
    """

    label: str
    args: tuple[str, ...] = ()
    toml: str = ""
    # Extra keys of the upstream's ``[[upstreams]]`` table (``max_connections = 4``): the
    # upstream is then configured in the TOML instead of by ``--upstream``.
    upstream_toml: str = ""


def encryption_supported() -> bool:
    """Whether this checkout of the mirror has an ``[encryption]`` config section."""
    from mirror.config import Config

    return "encryption" in {f.name for f in Config.__dataclass_fields__.values()}


def mirror_variants(extra_args: tuple[str, ...] = ()) -> list[MirrorVariant]:
    """The mirror configurations of scenario 1: the default, plus encryption off once the
    mirror has encryption (which is on by default)."""
    if not encryption_supported():
        return [MirrorVariant("mirror (no encryption in this build)", extra_args)]
    return [
        MirrorVariant("mirror, encryption on (default)", extra_args),
        MirrorVariant("mirror, encryption off", extra_args, "[encryption]\nenabled = false\n"),
    ]


@dataclass
class MirrorServer:
    """A mirror process with its own port, data directory and log."""

    base_dir: Path
    upstream_host: str
    upstream_url: str
    variant: MirrorVariant = field(default_factory=lambda: MirrorVariant("mirror"))
    tag_ttl: float | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def argv(self) -> list[str]:
        """``python -m mirror serve ...`` (uvloop, as the CLI always runs)."""
        argv = [sys.executable, "-m", "mirror", "serve"]
        toml = self.variant.toml
        if self.variant.upstream_toml:
            toml += (
                f'\n[[upstreams]]\nhost = "{self.upstream_host}"\nurl = "{self.upstream_url}"\n'
                f"{self.variant.upstream_toml}"
            )
        if toml:
            config = self.base_dir / "mirror.toml"
            config.write_text(toml)
            argv += ["--config", str(config)]
        argv += ["--listen", self.host, "--data-dir", str(self.data_dir)]
        if not self.variant.upstream_toml:
            argv += ["--upstream", f"{self.upstream_host}={self.upstream_url}"]
        argv += ["--default-upstream", self.upstream_host]
        if self.tag_ttl is not None:
            argv += ["--tag-ttl", str(self.tag_ttl)]
        return [*argv, *self.variant.args]

    def start(self, processes: Processes) -> MirrorServer:
        """Start, register with ``processes`` and wait for ``GET /v2/``."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        env = {k: v for k, v in env.items() if not k.startswith("MIRROR_")}
        # The key-encryption key beside this mirror's data, never in the repository.
        env["MIRROR_ENCRYPTION_KEK_FILE"] = str(self.base_dir / "mirror.kek")
        with (self.base_dir / "mirror.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(),
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.add_process(self.name, self.process)
        wait_http(f"{self.url}/v2/", self.process, START_TIMEOUT, self.name)
        return self

    @property
    def name(self) -> str:
        return f"mirror {self.base_dir.name}"

    def wait_for_log(self, text: str, within: float = START_TIMEOUT) -> None:
        """Wait until the log holds ``text`` (``mirror listening on ... (2 workers``: the
        first worker answers ``/v2/`` before the supervisor has started the others)."""
        deadline = time.monotonic() + within
        log = self.base_dir / "mirror.log"
        while text not in log.read_text(errors="replace"):
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited before logging {text!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not log {text!r} within {within} s")
            time.sleep(0.05)

    def stop(self, processes: Processes, *, remove_data: bool = True) -> None:
        """Stop the process by PID and (by default) delete its data directory."""
        if self.process is not None:
            stop_process(self.process)
            processes.remove(self.name)
        if remove_data:
            shutil.rmtree(self.base_dir, ignore_errors=True)


@dataclass
class Nginx:
    """nginx serving ``root`` with ``sendfile on``: the ceiling for a plain file over HTTP."""

    prefix: Path
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        """A self-contained config: foreground, pid and logs in ``prefix``, one location."""
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (
            f"{user}daemon off;\nworker_processes auto;\npid {self.prefix}/nginx.pid;\n"
            f"error_log {self.prefix}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "  default_type application/octet-stream;\n"
            f"  access_log {self.prefix}/access.log;\n"
            f"  client_body_temp_path {self.prefix}/body;\n"
            "  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n"
            f"  server {{\n    listen 127.0.0.1:{self.port};\n"
            f"    location / {{ root {self.root}; }}\n  }}\n"
            "}\n"
        )

    def start(self, processes: Processes) -> Nginx:
        """Write the config into ``prefix`` and run ``nginx -c CONF -p PREFIX``."""
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.config())
        with (self.prefix / "stderr.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["nginx", "-c", str(conf), "-p", str(self.prefix)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.add_process("nginx", self.process)
        wait_http(f"{self.url}/", self.process, START_TIMEOUT, "nginx")
        return self


TIER_MAIN = """\
{user}daemon off;
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/http.conf;
}}
"""


@dataclass
class TierFront:
    """nginx in front of a tier: the ``http`` configuration ``mirror tier nginx-config``
    renders (the digest ring), one worker per core, no access log."""

    prefix: Path
    servers: tuple[str, ...]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, processes: Processes) -> TierFront:
        """Write both files into ``prefix``, start nginx and wait for ``GET /v2/``."""
        from mirror.tier.nginx import NginxTier, render

        self.prefix.mkdir(parents=True, exist_ok=True)
        tier = NginxTier(self.servers, listen=f"127.0.0.1:{self.port}")
        (self.prefix / "http.conf").write_text(render(tier))
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = self.prefix / "nginx.conf"
        conf.write_text(TIER_MAIN.format(user=user, prefix=self.prefix))
        with (self.prefix / "stderr.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["nginx", "-c", str(conf), "-p", str(self.prefix)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.add_process(self.name, self.process)
        wait_http(f"{self.url}/v2/", self.process, START_TIMEOUT, self.name)
        return self

    @property
    def name(self) -> str:
        return f"tier nginx {self.prefix.name}"

    def stop(self, processes: Processes) -> None:
        """Stop nginx by PID."""
        if self.process is not None:
            stop_process(self.process)
            processes.remove(self.name)


@dataclass
class WanLink:
    """``python -m benchmarks.wan``: a WAN-like link (delay each way, shared rate) in front of
    ``target`` (``HOST:PORT``), in its own process so it never shares a core's GIL with the
    harness."""

    target: str
    delay: float
    rate: float
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, processes: Processes, log: Path) -> WanLink:
        """Start, register with ``processes`` and wait until ``/v2/`` answers through it."""
        argv = [sys.executable, "-m", "benchmarks.wan", "--port", str(self.port)]
        argv += ["--target", self.target, "--delay", str(self.delay), "--rate", str(self.rate)]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        processes.add_process("wan link", self.process)
        wait_http(f"{self.url}/v2/", self.process, START_TIMEOUT, "wan link")
        return self

    def stop(self, processes: Processes) -> None:
        """Stop it by PID (it writes its byte counters to its log)."""
        if self.process is not None:
            stop_process(self.process)
            processes.remove("wan link")
