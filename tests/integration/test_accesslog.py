"""One access-log line per request, with the handler's own duration."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.app.build import build_app
from mirror.config import load_config
from mirror.web.accesslog import AccessLogger

pytestmark = pytest.mark.integration


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_access_log_line(aiohttp_server: Any, tmp_path: Path) -> None:
    config = load_config(
        overrides={
            "storage": {"data_dir": str(tmp_path / "data")},
            "encryption": {"kek_file": str(tmp_path / "kek")},
            "upstreams": [{"host": "up.test", "url": "http://127.0.0.1:9"}],
            "default_upstream": "up.test",
        },
        environ={},
    )
    logger = logging.getLogger("test.access")
    logger.setLevel(logging.INFO)
    lines = Lines()
    logger.addHandler(lines)
    server = await aiohttp_server(
        build_app(config), host="127.0.0.1", access_log=logger, access_log_class=AccessLogger
    )
    async with aiohttp.ClientSession(headers={"User-Agent": "probe/1"}) as http:
        async with http.get(f"http://127.0.0.1:{server.port}/v2/x/manifests/Bad!?ns=q") as resp:
            assert resp.status == 404  # ns=q is not a mirrored registry
    assert len(lines.lines) == 1
    line = lines.lines[0]
    assert re.fullmatch(
        r'127\.0\.0\.1 "GET /v2/x/manifests/Bad!\?ns=q" 404 \d+ \d+\.\d\dms "probe/1"', line
    ), line
