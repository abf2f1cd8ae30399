"""Loading the configuration: defaults in code < a TOML file < ``MIRROR_*`` environment < flags.

Every value is coerced to its field's declared type; a problem raises ``ConfigError``, which
names the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from mirror.config.model import (
    AuthConfig,
    CacheConfig,
    Config,
    ConfigError,
    EncryptionConfig,
    RetentionConfig,
    ServerConfig,
    StorageConfig,
    UpstreamConfig,
)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Convert a TOML or environment value to the field's type, or raise naming ``key``."""
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(kind) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, get_args(kind)[0], key) for v in value)
    if kind is bool:
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        if kind is int:
            if not number.is_integer():
                raise ConfigError(f"{key}: expected a whole number, got {value!r}")
            return int(number)
        return number
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type")


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.')}: expected a table")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}{key}: unknown key")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: required")
            continue
        value = data[f.name]
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            kwargs[f.name] = _build(kind, value, f"{key}.")  # type: ignore[arg-type]
        elif f.name == "upstreams":
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected an array of tables")
            kwargs[f.name] = tuple(
                _build(UpstreamConfig, item, f"{key}[{i}].") for i, item in enumerate(value)
            )
        elif get_origin(kind) is tuple and dataclasses.is_dataclass(get_args(kind)[0]):
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected an array of tables")
            kwargs[f.name] = tuple(
                _build(get_args(kind)[0], item, f"{key}[{i}].") for i, item in enumerate(value)
            )
        else:
            kwargs[f.name] = _coerce(value, kind, key)
    return cls(**kwargs)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Collect ``MIRROR_<SECTION>_<KEY>`` (and ``MIRROR_DEFAULT_UPSTREAM``) into a nested dict."""
    result: dict[str, Any] = {}
    sections: dict[str, type] = {
        "server": ServerConfig,
        "storage": StorageConfig,
        "cache": CacheConfig,
        "encryption": EncryptionConfig,
        "auth": AuthConfig,
        "retention": RetentionConfig,
    }
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            if f.name == "policies":
                continue
            name = f"MIRROR_{section}_{f.name}".upper()
            if name in environ:
                result.setdefault(section, {})[f.name] = environ[name]
    if "MIRROR_DEFAULT_UPSTREAM" in environ:
        result["default_upstream"] = environ["MIRROR_DEFAULT_UPSTREAM"]
    return result


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (tables merge, other values replace)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_config(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load the configuration: defaults < TOML file < environment < ``overrides`` (CLI flags)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    data = merge(data, env_overrides(os.environ if environ is None else environ))
    data = merge(data, overrides or {})
    config: Config = _build(Config, data, "")
    return config.validate()
