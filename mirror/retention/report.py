"""Writing a run report as it is produced: the JSON text ``json.dumps(report, indent=2)``
gives, one image at a time, so a dry run over millions of images never holds its report."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

# Stands for the images in the report's head, to be cut out of its JSON text.
_MARK = "\u0000images\u0000"


async def json_chunks(
    head: dict[str, Any], batches: AsyncIterable[list[dict[str, Any]]]
) -> AsyncIterator[str]:
    """The report ``head`` with ``images`` the lines of ``batches``, as indented JSON text in
    pieces (exactly the text of ``json.dumps`` with ``indent=2`` of the whole report)."""
    text = json.dumps(head | {"images": _MARK}, indent=2)
    before, after = text.split(json.dumps(_MARK), 1)
    yield before
    first = True
    async for batch in batches:
        pieces = []
        for line in batch:
            item = json.dumps(line, indent=2).replace("\n", "\n    ")
            pieces.append(("[\n    " if first else ",\n    ") + item)
            first = False
        if pieces:
            yield "".join(pieces)
    yield ("[]" if first else "\n  ]") + after
