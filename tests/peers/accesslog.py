"""Parse the access log ``docker-registry`` 2.8 writes to stdout: Apache "combined" format,
one line per request, written once the response has finished, e.g.::

    127.0.0.1 - - [27/Nov/2026:01:48:01 +0000] "GET /v2/r/blobs/sha256:... HTTP/1.1" 404 157 "" "UA"

The path keeps its query string, URL-encoded as received (containerd's ``?ns=127.0.0.1%3A5000``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACCESS_LINE = re.compile(
    r'^(?P<remote>\S+) \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) "[^"]*" "(?P<agent>[^"]*)"'
)


@dataclass(frozen=True, slots=True)
class AccessLogEntry:
    """One request as the registry logged it; ``path`` includes any query string."""

    method: str
    path: str
    status: int
    size: int
    user_agent: str


def parse_access_log(text: str) -> list[AccessLogEntry]:
    """Parse the combined-format lines of ``text``; other lines are ignored."""
    entries = []
    for line in text.splitlines():
        match = _ACCESS_LINE.match(line)
        if match:
            size = match["size"]
            entries.append(
                AccessLogEntry(
                    match["method"],
                    match["path"],
                    int(match["status"]),
                    0 if size == "-" else int(size),
                    match["agent"],
                )
            )
    return entries
