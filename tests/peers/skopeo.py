"""Run ``skopeo copy`` (1.9) against local registries, blocking or from an event loop.

Measured here: skopeo pings ``/v2/`` first, sends ``Connection: close`` on every request and
copies blobs one at a time into ``dir:``; as root it keeps a blob-info cache under
``/var/lib/containers/cache/``.
"""

from __future__ import annotations

import asyncio
import subprocess

SKOPEO_BINARY = "skopeo"
SKOPEO_TIMEOUT = 120.0


class SkopeoError(RuntimeError):
    """A ``skopeo`` command failed; carries its arguments, exit status and stderr."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"skopeo exited {returncode}: {' '.join(args)}\n{stderr}")
        self.args_used = args
        self.returncode = returncode
        self.stderr = stderr


def skopeo_copy(src: str, dest: str, *options: str) -> subprocess.CompletedProcess[str]:
    """Run ``skopeo copy OPTIONS SRC DEST``; raises :class:`SkopeoError` on failure."""
    args = _skopeo_args(src, dest, options)
    done = subprocess.run(args, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT, check=False)
    if done.returncode != 0:
        raise SkopeoError(args, done.returncode, done.stderr)
    return done


async def skopeo_copy_async(src: str, dest: str, *options: str) -> subprocess.CompletedProcess[str]:
    """:func:`skopeo_copy` without blocking the event loop (for servers in the same loop)."""
    args = _skopeo_args(src, dest, options)
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SKOPEO_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    returncode = proc.returncode if proc.returncode is not None else -1
    if returncode != 0:
        raise SkopeoError(args, returncode, err.decode(errors="replace"))
    return subprocess.CompletedProcess(args, returncode, out.decode(), err.decode())


def _skopeo_args(src: str, dest: str, options: tuple[str, ...]) -> list[str]:
    # --insecure-policy: do not depend on /etc/containers/policy.json being permissive.
    return [SKOPEO_BINARY, "--insecure-policy", "copy", *options, src, dest]
