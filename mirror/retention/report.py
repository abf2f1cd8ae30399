"""Writing a run report as it is produced: the JSON text ``json.dumps(report, indent=2)``
gives, one image at a time, so a dry run over millions of images never holds its report."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from mirror.retention.lines import FIELDS, Line

# Stands for the images in the report's head, to be cut out of its JSON text.
_MARK = "\u0000images\u0000"
# How a line's members are indented inside the report's ``images`` (json's own layout).
_MEMBER = ",\n      "
_ITEM = ",\n        "


def _scalar(value: object) -> str:
    """``value`` as json writes it (str and int by their C paths)."""
    if type(value) is str:
        return json.encoder.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if type(value) is int:
        return int.__repr__(value)
    return json.dumps(value)


def _member(name: str, value: object) -> str:
    """``"name": value`` as ``json.dumps(indent=2)`` lays it out at a line's depth."""
    if type(value) is list and all(type(v) is str for v in value):
        items = _ITEM.join(map(json.encoder.encode_basestring_ascii, value))
        text = "[\n        " + items + "\n      ]" if value else "[]"
    elif type(value) in (list, dict):
        text = json.dumps(value, indent=2).replace("\n", "\n      ")
    else:
        text = _scalar(value)
    return json.encoder.encode_basestring_ascii(name) + ": " + text


def line_json(line: dict[str, Any]) -> str:
    """One report line as ``json.dumps(line, indent=2)`` indented into ``images`` gives it
    (written directly: json's indenting encoder is pure Python, ~10x slower)."""
    if not line:
        return "{}"
    return "{\n      " + _MEMBER.join(_member(k, v) for k, v in line.items()) + "\n    }"


# ``line_json``'s layout of a line's members, their values to fill in.
_LINE = "{\n      " + _MEMBER.join(f'"{name}": %s' for name in FIELDS) + "\n    }"


def _text(value: object) -> str:
    return json.encoder.encode_basestring_ascii(value) if type(value) is str else _scalar(value)


def line_text(line: Line) -> str:
    """``line_json`` of the line's JSON object, laid out from the tuple directly."""
    name, digest, media_type, size, tags, pull, tagged, cached, policy, *rest = line
    action, rule, reason, cooling = rest
    listed = (
        "[\n        " + _ITEM.join(map(json.encoder.encode_basestring_ascii, tags)) + "\n      ]"
        if tags
        else "[]"
    )
    return _LINE % (
        _text(name),
        _text(digest),
        _text(media_type),
        _text(size),
        listed,
        _text(pull),
        _text(tagged),
        _text(cached),
        _text(policy),
        _text(action),
        _text(rule),
        _text(reason),
        _text(cooling),
    )


async def json_chunks(
    head: dict[str, Any], batches: AsyncIterable[list[Line]]
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
            pieces.append(("[\n    " if first else ",\n    ") + line_text(line))
            first = False
        if pieces:
            yield "".join(pieces)
    yield ("[]" if first else "\n  ]") + after
