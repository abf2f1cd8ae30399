"""The ``MIRROR_*`` variables the Dockerfile sets are keys the configuration accepts (unknown
ones are refused at start, so a stale name there would stop the image from starting)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from mirror.config import load_config

ROOT = Path(__file__).resolve().parents[3]


def dockerfile_environment() -> dict[str, str]:
    """The ``MIRROR_*`` assignments of the Dockerfile's ``ENV`` instructions."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if re.match(r"\s*ENV\s", line):
            for word in shlex.split(line.split(None, 1)[1]):
                name, sep, value = word.partition("=")
                if sep and name.startswith("MIRROR_"):
                    found[name] = value
    return found


def test_the_dockerfiles_variables_are_valid_keys() -> None:
    environ = dockerfile_environment()
    assert "MIRROR_ENCRYPTION_KEK_FILE" in environ
    config = load_config(environ=environ)
    assert str(config.encryption.kek_file) == environ["MIRROR_ENCRYPTION_KEK_FILE"]
    assert str(config.storage.data_dir) == environ["MIRROR_STORAGE_DATA_DIR"]
