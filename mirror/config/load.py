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
)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Convert a TOML or environment value to the field's type, or raise naming ``key``."""
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        return _coerce_optional(value, kind, key)
    if origin is tuple:
        return _coerce_tuple(value, kind, key)
    if kind is bool:
        return _coerce_bool(value, key)
    if kind in (int, float):
        return _coerce_number(value, kind, key)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type")


def _coerce_optional(value: Any, kind: Any, key: str) -> Any:
    """``X | None``: None stays None, anything else becomes an ``X``."""
    if value is None:
        return None
    options = [a for a in get_args(kind) if a is not type(None)]
    return _coerce(value, options[0], key)


def _coerce_tuple(value: Any, kind: Any, key: str) -> tuple[Any, ...]:
    """``tuple[X, ...]`` from a list, or from a comma-separated string (the environment)."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    return tuple(_coerce(v, get_args(kind)[0], key) for v in value)


def _coerce_bool(value: Any, key: str) -> bool:
    """A TOML boolean, or ``1/true/yes/on`` and ``0/false/no/off`` in any case."""
    if isinstance(value, str) and value.lower() in (*_TRUE, *_FALSE):
        return value.lower() in _TRUE
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _coerce_number(value: Any, kind: type, key: str) -> int | float:
    """A finite number (whole for ``int``); booleans are not numbers here."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if kind is not int:
        return number
    if not number.is_integer():
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    return int(number)


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.')}: expected a table")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}{key}: unknown key")
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.name in data:
            kwargs[f.name] = _field_value(data[f.name], hints[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required")
    return cls(**kwargs)


def _field_value(value: Any, kind: Any, key: str) -> Any:
    """One field's value: a table, an array of tables, or a plain value."""
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, f"{key}.")  # type: ignore[arg-type]
    if get_origin(kind) is tuple and dataclasses.is_dataclass(get_args(kind)[0]):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected an array of tables")
        item_kind = get_args(kind)[0]
        return tuple(_build(item_kind, item, f"{key}[{i}].") for i, item in enumerate(value))
    return _coerce(value, kind, key)


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
