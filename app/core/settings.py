"""The platform's one settings object, read from `APP_*` environment variables.

Replicas get their values through `runtime_env.env_vars` in `serve_config.yaml`. Read settings
through `get_settings()` at run time, never at import: `serve build` and `serve deploy` import
modules on a driver where those variables are absent.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AmqpDsn, Field, RedisDsn, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "change-me"  # noqa: S105 - the sentinel the validator refuses outside dev
DEFAULT_WEBHOOK_SECRET = "change-me-too"  # noqa: S105 - likewise
MIN_SECRET_BYTES = 32


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
    # Redis connections one process keeps at most; more concurrent commands wait for one, up
    # to `redis_connection_wait_s` (a command, once sent, is bounded by `io_timeout_s`).
    redis_max_connections: int = Field(default=64, ge=2, le=10_000)
    redis_connection_wait_s: float = Field(default=30.0, gt=0)

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
    # A batch submit: most request messages in one body, and the body's size.
    max_batch_tasks: int = Field(default=1000, ge=1)
    max_batch_bytes: int = Field(default=8 << 20, ge=1024)

    # Waiting for results: the longest long-poll, and how often an idle event stream gets a
    # keep-alive comment (proxies close silent connections).
    max_wait_s: float = Field(default=30.0, gt=0, le=300)
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # Synchronous calls (/infer): how long to wait for the model when it sets no timeout_s.
    infer_timeout_s: float = Field(default=30.0, gt=0)
    # Cached answers larger than this (protobuf plus JSON) are not kept.
    cache_max_entry_bytes: int = Field(default=256 * 1024, ge=1024)

    # Shortest interval between two progress writes of one task (more are coalesced).
    progress_interval_s: float = Field(default=0.25, ge=0)

    # Webhooks: deliveries are signed with this secret (HMAC-SHA256), go only to hosts the
    # allow-list covers ("*" = any host with a public address; name loopback or private hosts
    # explicitly), and are tried this many times with doubling backoff.
    webhook_secret: SecretStr = SecretStr(DEFAULT_WEBHOOK_SECRET)
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = ["*"]
    webhook_queue: str = "platform.webhooks"
    webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=1.0, ge=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)

    # Logins that are admins (besides those promoted with `python -m app.admin promote`):
    # `ada, grace` or a JSON list.
    admin_logins: Annotated[list[str], NoDecode] = []
    # How long a gateway may act on a cached view of which models are disabled.
    disabled_cache_s: float = Field(default=1.0, ge=0)

    @field_validator("webhook_allowed_hosts", "admin_logins", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        """`a.example.com, *.example.org` or a JSON list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_prod(self) -> Settings:
        # dev and test keep the sentinels (a fresh secret per process would break tokens
        # across replicas); security.py warns when one is used.
        if self.environment != "prod":
            return self
        for name, secret, default in (
            ("APP_JWT_SECRET", self.jwt_secret, DEFAULT_JWT_SECRET),
            ("APP_WEBHOOK_SECRET", self.webhook_secret, DEFAULT_WEBHOOK_SECRET),
        ):
            value = secret.get_secret_value()
            if value == default or len(value.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"{name} is unset, left at its default or shorter than "
                    f"{MIN_SECRET_BYTES} bytes; set a random secret (scripts print one with "
                    "`python -c 'from app.core.settings import generate_secret as g; print(g())'`) "
                    "before running with APP_ENVIRONMENT=prod"
                )
        return self


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    return Settings()


def generate_secret() -> str:
    """Return a random secret suitable for `APP_JWT_SECRET`."""
    return secrets.token_urlsafe(48)
