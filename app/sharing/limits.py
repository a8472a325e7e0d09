"""Each user's limits: the settings' defaults, overridden per user by an admin (in Redis)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from app.core.redis_scripts import store_errors
from app.core.settings import Settings
from app.sharing.admission import SubmitLimits
from app.sharing.fair_share import Priority

# -1: no limit.
NO_LIMIT = -1


class UserLimits(BaseModel):
    """The limits one user has (-1: none)."""

    submits_per_s: float = Field(ge=-1, description="Submit calls refilled per second.")
    submit_burst: float = Field(ge=-1, description="Submit calls that may come at once.")
    active_tasks: int = Field(ge=-1, description="Tasks queued or running per model.")
    open_streams: int = Field(ge=-1, description="Event streams and long-polls open at once.")
    webhooks_in_flight: int = Field(ge=-1, description="Webhook deliveries under way at once.")
    max_priority: Priority = Field(description="The highest priority a task may have.")

    @classmethod
    def defaults(cls, settings: Settings) -> UserLimits:
        return cls(
            submits_per_s=settings.quota_submits_per_s,
            submit_burst=settings.quota_submit_burst,
            active_tasks=settings.quota_active_tasks,
            open_streams=settings.quota_open_streams,
            webhooks_in_flight=settings.quota_webhooks_in_flight,
            max_priority=Priority(settings.quota_max_priority),
        )

    def submit_limits(self) -> SubmitLimits:
        return SubmitLimits(
            submits_per_s=self.submits_per_s,
            submit_burst=self.submit_burst,
            active_tasks=self.active_tasks,
            max_priority=self.max_priority,
        )


class LimitOverrides(BaseModel):
    """An admin's changes to one user's limits; a field left out (or null) is the default."""

    model_config = ConfigDict(extra="forbid")

    submits_per_s: float | None = Field(default=None, ge=-1)
    submit_burst: float | None = Field(default=None, ge=-1)
    active_tasks: int | None = Field(default=None, ge=-1)
    open_streams: int | None = Field(default=None, ge=-1)
    webhooks_in_flight: int | None = Field(default=None, ge=-1)
    max_priority: Priority | None = None


class LimitStore:
    """Per-user overrides: one Redis hash per user (`ResultStore.limits_key`), which the
    store's Lua scripts read too (a priority is kept as its level)."""

    def __init__(self, redis: Redis, *, prefix: str, defaults: UserLimits) -> None:
        self._redis = redis
        self._prefix = prefix
        self.defaults = defaults

    def key(self, login: str) -> str:
        return f"{self._prefix}:limits:{login}"

    async def overrides(self, login: str) -> LimitOverrides:
        with store_errors():
            raw: dict[Any, Any] = await self._redis.hgetall(self.key(login))  # type: ignore[misc,unused-ignore]
        values: dict[str, Any] = {}
        for name, value in raw.items():
            field = name.decode() if isinstance(name, bytes) else str(name)
            text = value.decode() if isinstance(value, bytes) else str(value)
            if field == "max_priority":
                values[field] = Priority.of_level(int(float(text)))
            elif field in LimitOverrides.model_fields:
                values[field] = float(text)
        return LimitOverrides.model_validate(values)

    async def effective(self, login: str) -> UserLimits:
        """The limits in force for `login`: defaults with their overrides applied."""
        changes = (await self.overrides(login)).model_dump(exclude_none=True)
        return self.defaults.model_copy(update=changes)

    async def update(self, login: str, changes: LimitOverrides) -> LimitOverrides:
        """Set the fields `changes` holds (null ones go back to the default)."""
        sets: dict[str | bytes, str | bytes] = {}
        clears: list[str] = []
        for name in changes.model_fields_set:
            value = getattr(changes, name)
            if value is None:
                clears.append(name)
            elif isinstance(value, Priority):
                sets[name] = str(value.level)
            else:
                sets[name] = repr(value)
        with store_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                if sets:
                    pipe.hset(self.key(login), mapping=sets)  # type: ignore[arg-type,unused-ignore]
                if clears:
                    pipe.hdel(self.key(login), *clears)
                await pipe.execute()
        return await self.overrides(login)

    async def clear(self, login: str) -> None:
        with store_errors():
            await self._redis.delete(self.key(login))
