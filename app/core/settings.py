"""The platform's one settings object, read from `APP_*` environment variables.

Replicas get their values through `runtime_env.env_vars` in `serve_config.yaml`. Read settings
through `get_settings()` at run time, never at import: `serve build` and `serve deploy` import
modules on a driver where those variables are absent.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Literal

from pydantic import AmqpDsn, Field, RedisDsn, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_SECRET = "change-me"  # noqa: S105 - the sentinel the validator refuses outside dev


class Settings(BaseSettings):
    """Typed configuration of the gateway, the model replicas and the registry."""

    model_config = SettingsConfigDict(env_prefix="APP_", extra="ignore")

    environment: Literal["dev", "test", "prod"] = "dev"

    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
    amqp_url: AmqpDsn = AmqpDsn("amqp://guest:guest@127.0.0.1:5672/")
    # Prefix of every Redis key the platform writes, so several deployments (or test runs)
    # can share one Redis database.
    redis_prefix: str = "msp"

    # Unacked deliveries one replica may hold at a time.
    prefetch_count: int = Field(default=16, ge=1, le=10_000)
    # How long results and statuses stay in Redis.
    result_ttl_s: int = Field(default=24 * 3600, ge=1)
    # Connection attempts a replica makes on start before it reports itself unhealthy.
    connect_attempts: int = Field(default=5, ge=1)
    connect_retry_delay_s: float = Field(default=1.0, ge=0)
    # Bound on any single broker or store operation made while serving an HTTP request.
    io_timeout_s: float = Field(default=5.0, gt=0)

    # Registry: how often it pings every instance, and how long an answer may take.
    ping_interval_s: float = Field(default=10.0, gt=0)
    ping_timeout_s: float = Field(default=5.0, gt=0)
    # How long the gateway may serve a cached model list.
    model_cache_ttl_s: float = Field(default=1.0, ge=0)
    registry_name: str = "model_registry"
    registry_namespace: str = "model_serving"

    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_ttl_s: int = Field(default=3600, ge=60)

    max_body_bytes: int = Field(default=1 << 20, ge=1024)

    @model_validator(mode="after")
    def _refuse_default_secret_outside_dev(self) -> Settings:
        if self.jwt_secret.get_secret_value() in ("", DEFAULT_JWT_SECRET):
            if self.environment == "prod":
                raise ValueError(
                    "APP_JWT_SECRET is unset or left at its default; set a random secret "
                    "of at least 32 bytes before running with APP_ENVIRONMENT=prod"
                )
            # dev and test: a fresh secret per process would break tokens across replicas,
            # so derive nothing; keep the sentinel and let security.py warn once.
        return self


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    return Settings()


def generate_secret() -> str:
    """Return a random secret suitable for `APP_JWT_SECRET`."""
    return secrets.token_urlsafe(48)
