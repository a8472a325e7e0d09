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

    # The HS256 key of access tokens. Unset: the platform makes a random one on first start
    # and keeps it in Redis, where every gateway replica (and a restarted one) finds it.
    jwt_secret: SecretStr | None = None
    jwt_ttl_s: int = Field(default=3600, ge=60)
    # How long a gateway trusts that a token's account still exists before asking Redis again.
    account_cache_s: float = Field(default=5.0, ge=0)

    # Sign-up and login. Password hashes (argon2id, 64 MiB each) computed at once per gateway
    # process, and how many more may wait for one (past that: 503 with Retry-After).
    password_hash_workers: int = Field(default=2, ge=1, le=64)
    password_hash_queue: int = Field(default=16, ge=0, le=10_000)
    # Login attempts not followed by a success: after login_failures_per_login for one login
    # from one client address, or login_failures_per_address for any logins from one address,
    # each further try must wait twice as long as the last (1 s, 2 s, 4 s..., at most
    # login_max_delay_s); counts are forgotten after login_failure_window_s without attempts.
    login_failures_per_login: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=50, ge=1)
    login_max_delay_s: float = Field(default=900.0, gt=0)
    login_failure_window_s: int = Field(default=900, ge=1)
    # Registrations per client address: a bucket of this many that refills at this rate.
    register_burst: int = Field(default=20, ge=1)
    register_per_minute: float = Field(default=10.0, gt=0)

    max_body_bytes: int = Field(default=1 << 20, ge=1024)

    # The Open Inference Protocol over gRPC: each gateway replica serves it on this address
    # (0: not served), sharing the port with the node's other gateway replicas (SO_REUSEPORT);
    # with a certificate and key (PEM files), over TLS only.
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=0, ge=0, le=65535)
    grpc_tls_cert_file: str | None = None
    grpc_tls_key_file: str | None = None
    # A batch submit: most request messages in one body, and the body's size.
    max_batch_tasks: int = Field(default=1000, ge=1)
    # OpenAI API (/v1): how long uploaded files and batch outputs (and batches) are kept, the
    # largest file one may upload, and the most lines one batch may hold.
    openai_file_ttl_s: int = Field(default=7 * 24 * 3600, ge=3600)
    openai_max_file_bytes: int = Field(default=50 << 20, ge=1024)
    openai_batch_max_lines: int = Field(default=50_000, ge=1)
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

    # Webhooks: deliveries are signed with their owner's own secret (Standard Webhooks), go
    # only to hosts the allow-list covers ("*" = any host with a public address; name loopback
    # or private hosts explicitly), and are tried this many times with doubling backoff.
    # Unset: "*" in dev and test, nothing at all in prod.
    webhook_allowed_hosts: Annotated[list[str] | None, NoDecode] = None
    webhook_queue: str = "platform.webhooks"
    webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=1.0, ge=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    # Deliveries under way at once to one receiving host (over all webhook replicas): a slow
    # receiver holds only these, never everyone's deliveries.
    webhook_max_per_host: int = Field(default=4, ge=1)
    # After a user rotates their webhook secret, deliveries carry a signature made with the
    # previous one as well for this long, so receivers can switch without losing any.
    webhook_secret_grace_s: float = Field(default=24 * 3600.0, ge=0)

    # Quotas: each user's defaults (an admin overrides them per user); -1 means no limit.
    # Submit calls (a batch is one) refill at quota_submits_per_s up to quota_submit_burst.
    quota_submits_per_s: float = Field(default=50.0, ge=-1)
    quota_submit_burst: int = Field(default=200, ge=-1)
    # Tasks one user may have queued or running per model (a batch past it is refused whole).
    quota_active_tasks: int = Field(default=1000, ge=-1)
    # Event streams and long-polls one user may hold open at once (over all gateway replicas).
    quota_open_streams: int = Field(default=100, ge=-1)
    # Webhook deliveries of one user's tasks under way at once.
    quota_webhooks_in_flight: int = Field(default=8, ge=-1)
    # The highest priority a user may give a task.
    quota_max_priority: Literal["low", "normal", "high"] = "normal"

    # Fair share: each user's tasks of a model beyond their window wait in a hold queue of
    # their own and move into the model's queue in turn (app.sharing.fair_share). Off: every
    # task goes straight to the model's queue, first come first served.
    fair_share: bool = True
    # How often a replica looks for held tasks whose owner's window has room.
    fair_share_sweep_s: float = Field(default=1.0, gt=0)

    # Gone: a listed login that nobody had registered yet made whoever registered it an admin.
    # Admins are made with `python -m app.admin promote LOGIN`; a value here stops the start.
    admin_logins: Annotated[list[str], NoDecode] = []
    # A bearer token Prometheus must send to read /metrics (required in prod).
    metrics_token: SecretStr | None = None
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

    @field_validator("jwt_secret", "metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes; leave APP_JWT_SECRET unset to have "
                "the platform make one, or print one with `python -c 'from "
                "app.core.settings import generate_secret as g; print(g())'`"
            )
        return value

    @field_validator("admin_logins")
    @classmethod
    def _no_admin_list(cls, value: list[str]) -> list[str]:
        if value:
            raise ValueError(
                "APP_ADMIN_LOGINS no longer makes admins (anyone could register a listed login "
                "first); remove it and run `python -m app.admin promote LOGIN` for each admin"
            )
        return value

    @model_validator(mode="after")
    def _production_needs(self) -> Settings:
        if self.environment == "prod" and self.metrics_token is None:
            raise ValueError(
                "APP_METRICS_TOKEN is unset: in prod /metrics needs a scrape token (a random "
                f"string of at least {MIN_SECRET_BYTES} bytes that Prometheus sends as a bearer "
                "token)"
            )
        return self

    @property
    def callback_hosts(self) -> list[str]:
        """The webhook allow-list in force: as set, else `*` outside prod and nothing in prod."""
        if self.webhook_allowed_hosts is not None:
            return self.webhook_allowed_hosts
        return [] if self.environment == "prod" else ["*"]


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    return Settings()


def generate_secret() -> str:
    """Return a random secret suitable for `APP_JWT_SECRET` or `APP_METRICS_TOKEN`."""
    return secrets.token_urlsafe(48)
