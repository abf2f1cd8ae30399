"""``python -m benchmarks.profiles RAW [RAW...]``: summarise py-spy's collapsed stacks
(``py-spy record --format raw --subprocesses``) per mirror process: the top frames by own
samples and by inclusive samples, as Markdown (what benchmarks/published/profiles/ holds)."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

TOP = 25


def _frames(stack: str) -> list[str]:
    """The frames of one collapsed stack, outermost first, without line numbers."""
    frames = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        path = where.rsplit(":", 1)[0].rstrip(")")
        short = "/".join(path.split("/")[-2:]) if path else ""
        frames.append(f"{name} ({short})" if short else name)
    return frames


def summarise(raw: str) -> dict[str, tuple[int, Counter[str], Counter[str]]]:
    """Per process (its root frame): total samples, own samples and inclusive samples."""
    result: dict[str, tuple[int, Counter[str], Counter[str]]] = {}
    totals: dict[str, int] = defaultdict(int)
    own: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        process = frames[0] if frames[0].startswith("process ") else "process"
        body = frames[1:] if frames[0].startswith("process ") else frames
        body = [f for f in body if not f.startswith("thread ")] or ["(idle)"]
        totals[process] += count
        own[process][body[-1]] += count
        for frame in set(body):
            inclusive[process][frame] += count
    for process, total in totals.items():
        result[process] = (total, own[process], inclusive[process])
    return result


def render(title: str, raw: str) -> str:
    """Markdown tables of the top frames of every process with ``mirror serve`` in its root."""
    out = [f"## {title}", ""]
    for process, (total, own, inclusive) in sorted(summarise(raw).items()):
        if process != "process" and "mirror" not in process:
            continue
        heading = f"### {process[:160]}\n\n" if process != "process" else ""
        out += [f"{heading}{total} samples while on CPU (py-spy, 100 Hz)", ""]
        for name, counter in (("own", own), ("inclusive", inclusive)):
            out += [f"| top frames ({name}) | share |", "|---|---:|"]
            for frame, count in counter.most_common(TOP):
                out.append(f"| `{frame[:110]}` | {count / total:.1%} |")
            out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """Print the summary of each raw file given."""
    for name in argv:
        print(render(Path(name).name, Path(name).read_text(errors="replace")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
