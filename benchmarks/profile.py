"""Summarise a ``py-spy record --format raw`` profile (collapsed stacks) as Markdown: where
the busy samples of the mirror went, idle waits left out.

``python -m benchmarks.profile FILE [--top N] [--within mirror/]`` prints two tables: the
mirror's frames by inclusive share (a frame counts once per sample, wherever it is on the
stack) and every frame by self share (the leaf).
A sample whose leaf is a wait (epoll, a lock, a queue, a condition) is idle: the event loop or
a pool thread with nothing to do; shares are of the busy samples.
"""

from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import dataclass, field
from pathlib import Path

IDLE_LEAVES = ("epoll_wait", "epoll_pwait", "pthread_cond_", "sem_wait", "futex", "__futex")
IDLE_FRAMES = ("_queue_SimpleQueue_get", "PyThread_acquire_lock_timed", "Condition.wait")


def frame_name(frame: str) -> str:
    """``func (file:line)`` without the line, so samples of one function add up; a native
    frame without a symbol (``0x7f.. (libcrypto.so.3)``) is named by its library."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    if name.startswith("0x") and path:
        return f"[{path}]"
    return f"{name} ({path})" if path else name


@dataclass
class Profile:
    """Busy and idle sample counts, per frame inclusive and per leaf."""

    busy: int = 0
    idle: int = 0
    inclusive: collections.Counter[str] = field(default_factory=collections.Counter)
    leaves: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, frames: list[str], count: int) -> None:
        """One collapsed stack seen ``count`` times."""
        leaf = frames[-1]
        if leaf.startswith(IDLE_LEAVES) or any(f.startswith(IDLE_FRAMES) for f in frames):
            self.idle += count
            return
        self.busy += count
        self.leaves[frame_name(leaf)] += count
        for name in {frame_name(f) for f in frames}:
            self.inclusive[name] += count


def load(text: str) -> Profile:
    """Parse ``stack;stack;leaf COUNT`` lines."""
    profile = Profile()
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            profile.add(stack.split(";"), int(count))
    return profile


def render(profile: Profile, top: int, within: str) -> str:
    """The two Markdown tables; the inclusive one lists only frames whose file contains
    ``within`` (the mirror's own code by default)."""
    total = profile.busy or 1
    share = profile.busy / ((profile.busy + profile.idle) or 1)
    out = [f"{profile.busy} busy samples ({share:.0%} of all; the rest idle waits)", ""]
    ours = collections.Counter({f: n for f, n in profile.inclusive.items() if within in f})
    for title, counter in ((f"inclusive ({within})", ours), ("self", profile.leaves)):
        out += [f"| {title} % | frame |", "|---:|---|"]
        out += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in counter.most_common(top)]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print the summary of one profile."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    p.add_argument("file", type=Path, help="py-spy record --format raw output")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--within", default="mirror/", help="inclusive table: frames of these files")
    args = p.parse_args(argv)
    print(render(load(args.file.read_text()), args.top, args.within))
    return 0


if __name__ == "__main__":
    sys.exit(main())
