"""Typed, frozen configuration (``model``), loaded from TOML and ``MIRROR_*`` (``load``)."""

from mirror.config.load import env_overrides, load_config, merge
from mirror.config.model import (
    AuthConfig,
    CacheConfig,
    Config,
    ConfigError,
    EncryptionConfig,
    MiB,
    PolicyConfig,
    RetentionConfig,
    ServerConfig,
    StorageConfig,
    UpstreamConfig,
)

__all__ = [
    "AuthConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "EncryptionConfig",
    "MiB",
    "PolicyConfig",
    "RetentionConfig",
    "ServerConfig",
    "StorageConfig",
    "UpstreamConfig",
    "env_overrides",
    "load_config",
    "merge",
]
