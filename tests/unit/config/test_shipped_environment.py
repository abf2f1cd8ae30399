"""The configuration the container image ships (``conf/container.toml``, copied to
``/etc/mirror/mirror.toml``) and any ``MIRROR_*`` variable its Dockerfile sets are accepted by
the mirror's own loader (unknown keys are refused at start, so a stale name there would stop
the image from starting), and put the data and the key where the image's volumes are."""

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


def test_the_images_config_and_variables_are_valid_and_use_its_volumes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "conf/container.toml" in dockerfile and "/etc/mirror/mirror.toml" in dockerfile
    config = load_config(ROOT / "conf" / "container.toml", environ=dockerfile_environment())
    assert 'VOLUME ["/var/lib/mirror"]' in dockerfile
    assert str(config.storage.data_dir).startswith("/var/lib/mirror/")
    # The key-encryption key is outside the cache volume (a mounted secret), never baked in.
    assert str(config.encryption.kek_file).startswith("/run/mirror/")
    assert config.server.listen.endswith(":5016") and "EXPOSE 5016" in dockerfile
