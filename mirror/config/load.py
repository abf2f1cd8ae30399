"""Loading the configuration: defaults in code < a TOML file < ``MIRROR_*`` environment < flags.

Every value is coerced to its field's declared type; a problem raises ``ConfigError``, which
names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import types
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from mirror.config.model import (
    AuthConfig,
    CacheConfig,
    Config,
    ConfigError,
    ConsoleConfig,
    EncryptionConfig,
    HostedConfig,
    MetadataConfig,
    PrewarmConfig,
    RetentionConfig,
    ServerConfig,
    StorageConfig,
    TierConfig,
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
    # ``int | str`` (a count or a word such as "auto"): the first type the value fits.
    for option in options[:-1]:
        try:
            return _coerce(value, option, key)
        except ConfigError:
            continue
    return _coerce(value, options[-1], key)


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


# ``MIRROR_*`` variables that are not configuration keys: the ``mirror admin`` / ``mirror
# retention`` client's defaults (mirror/cli/client.py) and the keyring's default variable
# (``encryption.kek_env``). Any other ``MIRROR_*`` variable is refused.
OTHER_VARIABLES = ("MIRROR_URL", "MIRROR_USER", "MIRROR_TOKEN", "MIRROR_KEKS")
_PREFIX = "MIRROR_"
_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "storage": StorageConfig,
    "metadata": MetadataConfig,
    "cache": CacheConfig,
    "encryption": EncryptionConfig,
    "auth": AuthConfig,
    "retention": RetentionConfig,
    "prewarm": PrewarmConfig,
    "console": ConsoleConfig,
    "hosted": HostedConfig,
    # A replica finds itself from MIRROR_TIER_SELF (set from its pod's name).
    "tier": TierConfig,
}


def env_variables() -> dict[str, tuple[str, ...]]:
    """Every ``MIRROR_*`` variable naming a scalar key, with the key's path."""
    names: dict[str, tuple[str, ...]] = {"MIRROR_DEFAULT_UPSTREAM": ("default_upstream",)}
    for section, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name != "policies":
                names[f"{_PREFIX}{section}_{f.name}".upper()] = (section, f.name)
    return names


def env_overrides(
    environ: Mapping[str, str], allowed: Collection[str] = OTHER_VARIABLES
) -> dict[str, Any]:
    """Collect ``MIRROR_<SECTION>_<KEY>`` (and ``MIRROR_DEFAULT_UPSTREAM``) into a nested dict;
    raise ``ConfigError`` naming any other ``MIRROR_*`` variable not in ``allowed`` (a typo
    such as ``MIRROR_AUTH_ENABLE`` must not start the server with auth off)."""
    known = env_variables()
    result: dict[str, Any] = {}
    for name in sorted(environ):
        path = known.get(name)
        if path is not None:
            target = result
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = environ[name]
        elif name.startswith(_PREFIX) and name not in allowed:
            raise ConfigError(_unknown_variable(name, [*known, *allowed]))
    return result


def _unknown_variable(name: str, known: list[str]) -> str:
    """The message for an unknown ``MIRROR_*`` variable, suggesting the closest known one."""
    tail = name.removeprefix(_PREFIX)
    close = [k for k in known if k.endswith(f"_{tail}")] or difflib.get_close_matches(
        name, known, n=1, cutoff=0.6
    )
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (
        f"environment variable {name}: not a configuration key{hint}; "
        "scalar keys are MIRROR_<SECTION>_<KEY>, tables go in the config file"
    )


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (tables merge, other values replace)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _kek_envs(
    data: Mapping[str, Any], overrides: Mapping[str, Any] | None, environ: Mapping[str, str]
) -> tuple[str, ...]:
    """The keyring variables the file, environment or flags name (they are not keys either)."""
    names = [environ.get("MIRROR_ENCRYPTION_KEK_ENV", "")]
    for source in (overrides or {}, data):
        encryption = source.get("encryption")
        if isinstance(encryption, Mapping) and isinstance(encryption.get("kek_env"), str):
            names.append(encryption["kek_env"])
    return tuple(name for name in names if name)


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
    env = os.environ if environ is None else environ
    allowed = (*OTHER_VARIABLES, *_kek_envs(data, overrides, env))
    data = merge(data, env_overrides(env, allowed))
    data = merge(data, overrides or {})
    config: Config = _build(Config, data, "")
    return config.validate()
