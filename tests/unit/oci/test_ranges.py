"""Single-range ``Range`` requests on blobs (RFC 9110 §14)."""

from __future__ import annotations

import pytest

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.ranges import BEYOND, ByteRange, parse_range, resolve_range


@pytest.mark.parametrize(
    "header, expected",
    [
        pytest.param(None, None, id="no-header"),
        pytest.param("bytes=0-0", (0, 0), id="first-byte"),
        pytest.param("bytes=0-99", (0, 99), id="closed"),
        pytest.param("bytes=5-", (5, None), id="open-ended"),
        pytest.param("bytes=-3", (None, 3), id="suffix"),
        pytest.param("bytes=7-7", (7, 7), id="single-byte"),
        pytest.param(" bytes=1-2 ", (1, 2), id="surrounding-whitespace"),
        pytest.param("bytes=0-99999999999999999999", (0, 99999999999999999999), id="huge-last"),
        # Python's int() refuses more than 4300 digits: such positions stand for BEYOND.
        pytest.param("bytes=" + "9" * 5000 + "-", (BEYOND, None), id="5000-digit-first"),
        pytest.param("bytes=0-" + "9" * 5000, (0, BEYOND), id="5000-digit-last"),
        pytest.param("bytes=-" + "9" * 5000, (None, BEYOND), id="5000-digit-suffix"),
        pytest.param("bytes=" + "0" * 5000 + "7-0007", (7, 7), id="leading-zeros"),
        # RFC 9110 §14.2: a server may ignore a range it does not serve and send it all.
        pytest.param("bytes=1-2,4-5", None, id="multiple-ranges-ignored"),
        pytest.param("items=0-1", None, id="other-unit-ignored"),
    ],
)
def test_parse_range(header: str | None, expected: tuple[int | None, int | None] | None) -> None:
    assert parse_range(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("bytes=3-2", id="last-before-first"),
        pytest.param("bytes=-", id="no-numbers"),
        pytest.param("bytes=", id="no-range"),
        pytest.param("bytes=a-b", id="not-numbers"),
        pytest.param("bytes=-1-2", id="negative-first"),
        pytest.param("bytes=" + "9" * 5000 + "-" + "9" * 4999, id="huge-last-before-first"),
        pytest.param("bytes=\u0661-\u0662", id="non-ascii-digits"),
        pytest.param("0-1", id="no-unit"),
        pytest.param("bytes 0-1", id="space-instead-of-equals"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_range_rejects_what_the_mirror_does_not_serve(header: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_range(header)

    assert caught.value.code is ErrorCode.RANGE_INVALID
    assert caught.value.status == 416
    assert caught.value.detail == {"range": header}


@pytest.mark.parametrize(
    "spec, size, first, last",
    [
        pytest.param((0, 0), 10, 0, 0, id="first-byte"),
        pytest.param((9, 9), 10, 9, 9, id="last-byte"),
        pytest.param((9, None), 10, 9, 9, id="last-byte-open-ended"),
        pytest.param((None, 1), 10, 9, 9, id="last-byte-suffix"),
        pytest.param((0, None), 10, 0, 9, id="whole-open-ended"),
        pytest.param((0, 9), 10, 0, 9, id="whole-closed"),
        pytest.param((3, 6), 10, 3, 6, id="middle"),
        pytest.param((None, 3), 10, 7, 9, id="suffix"),
        pytest.param((None, 10), 10, 0, 9, id="suffix-equal-to-size"),
        pytest.param((None, 100), 10, 0, 9, id="suffix-larger-than-size"),
        pytest.param((5, 100), 10, 5, 9, id="last-clipped-to-size"),
        pytest.param((0, 0), 1, 0, 0, id="one-byte-object"),
        pytest.param((0, BEYOND), 10, 0, 9, id="last-beyond-every-object"),
        pytest.param((None, BEYOND), 10, 0, 9, id="suffix-beyond-every-object"),
    ],
)
def test_resolve_range(
    spec: tuple[int | None, int | None], size: int, first: int, last: int
) -> None:
    assert resolve_range(spec, size) == ByteRange(first, last, size)


@pytest.mark.parametrize(
    "spec, size",
    [
        pytest.param((10, None), 10, id="first-at-size"),
        pytest.param((10, 20), 10, id="beyond-size"),
        pytest.param((100, 200), 10, id="far-beyond-size"),
        pytest.param((BEYOND, None), 10, id="first-beyond-every-object"),
        pytest.param((None, 0), 10, id="empty-suffix"),
        pytest.param((0, None), 0, id="empty-object"),
        pytest.param((0, 0), 0, id="empty-object-first-byte"),
        pytest.param((None, 5), 0, id="empty-object-suffix"),
    ],
)
def test_unsatisfiable_range_is_416_with_content_range_of_the_size(
    spec: tuple[int | None, int | None], size: int
) -> None:
    with pytest.raises(RegistryError) as caught:
        resolve_range(spec, size)

    assert caught.value.code is ErrorCode.RANGE_INVALID
    assert caught.value.status == 416
    assert caught.value.headers == {"Content-Range": f"bytes */{size}"}
    assert caught.value.detail == {"size": size}


@pytest.mark.parametrize(
    "byte_range, length, content_range",
    [
        pytest.param(ByteRange(0, 0, 10), 1, "bytes 0-0/10", id="first-byte"),
        pytest.param(ByteRange(7, 9, 10), 3, "bytes 7-9/10", id="tail"),
        pytest.param(ByteRange(0, 9, 10), 10, "bytes 0-9/10", id="whole"),
    ],
)
def test_length_and_content_range_header(
    byte_range: ByteRange, length: int, content_range: str
) -> None:
    assert byte_range.length == length
    assert byte_range.content_range() == content_range


@pytest.mark.parametrize(
    "header, size, content_range",
    [
        pytest.param("bytes=0-0", 1000, "bytes 0-0/1000", id="first-byte"),
        pytest.param("bytes=-100", 1000, "bytes 900-999/1000", id="suffix"),
        pytest.param("bytes=500-", 1000, "bytes 500-999/1000", id="open-ended"),
        pytest.param("bytes=990-2000", 1000, "bytes 990-999/1000", id="clipped"),
    ],
)
def test_header_to_content_range(header: str, size: int, content_range: str) -> None:
    spec = parse_range(header)
    assert spec is not None

    assert resolve_range(spec, size).content_range() == content_range
