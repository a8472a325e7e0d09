"""The gateway's long-lived clients, opened in the app's lifespan and shared by all requests."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field

from app.accounts.login_throttle import LoginPolicy, LoginThrottle
from app.accounts.secrets import SigningKey
from app.accounts.security import PasswordHashing, VerifiedTokens
from app.accounts.users import AccountCache, UserStore
from app.catalog.catalog import ModelCatalog
from app.catalog.switches import ModelSwitches
from app.core.broker import BrokerError, Publisher, QueueMissing
from app.core.errors import ModelDisabled
from app.core.metrics import TASKS_FINISHED, MetricsRecorder
from app.core.redis_scripts import StoreError
from app.core.settings import Settings
from app.inference.cache import ResultCache
from app.inference.caller import ModelCaller, Replicas, ServeReplicas
from app.openai.batch_worker import BatchWorker
from app.openai.batches import BatchStore
from app.openai.files import FileStore
from app.push.notifications import TaskNotifications
from app.sharing.leases import Leases
from app.sharing.limits import LimitStore, UserLimits
from app.sharing.ratelimit import TokenBuckets
from app.sharing.refusals import refusal
from app.tasks.dead_letters import DeadLetters
from app.tasks.idempotency import IdempotencyKeys
from app.tasks.shapes import Transition
from app.tasks.store import ResultStore
from app.tasks.submission import Accepted, Submitter
from app.webhooks.queue import declare_webhook_queues
from protos.task_pb2 import WebhookJob
from registry.client import RayRegistry, Registry, report_metrics_forever
from registry.schemas import InstanceDetail, ReplicaStatus

logger = logging.getLogger(__name__)


class _WebhookQueue:
    """Queues webhook deliveries of tasks the gateway itself made final, and of the ends of
    OpenAI batches."""

    def __init__(self, settings: Settings, publisher: Publisher, store: ResultStore) -> None:
        self._settings = settings
        self._publisher = publisher
        self._store = store

    async def enqueue(self, task_id: str) -> None:
        """Queue the delivery of a final task's document to its callback URL."""
        try:
            await self._publish(WebhookJob(task_id=task_id, attempt=1), task_id)
        except BrokerError as exc:
            logger.error("task %s: its webhook could not be queued: %s", task_id, exc)
            try:
                await self._store.update_webhook(
                    task_id, status="failed", error="could not be queued for delivery"
                )
            except StoreError:
                pass

    async def enqueue_batch(self, batch_id: str) -> None:
        """Queue the delivery of an OpenAI batch's end (its batch object) to its callback URL.

        Raises:
            BrokerError: not queued (the batch worker tries again at its next turn).
        """
        await self._publish(WebhookJob(batch_id=batch_id, attempt=1), batch_id)

    async def _publish(self, job: WebhookJob, message_id: str) -> None:
        queue = self._settings.webhook_queue
        body = job.SerializeToString()
        try:
            await self._publisher.publish(queue, body, message_id=message_id)
        except QueueMissing:
            await self._publisher.declare(
                lambda channel: declare_webhook_queues(
                    channel, queue, max_attempts=self._settings.webhook_max_attempts
                )
            )
            await self._publisher.publish(queue, body, message_id=message_id)


@dataclass
class Services:
    settings: Settings
    store: ResultStore
    users: UserStore
    publisher: Publisher
    catalog: ModelCatalog
    registry: Registry
    metrics: MetricsRecorder
    notifications: TaskNotifications
    submitter: Submitter
    caller: ModelCaller
    webhooks: _WebhookQueue
    switches: ModelSwitches
    dead_letters: DeadLetters
    signing_key: SigningKey
    accounts: AccountCache
    passwords: PasswordHashing
    logins: LoginThrottle
    # Per-client-address buckets (registrations).
    address_buckets: TokenBuckets
    limits: LimitStore
    leases: Leases
    openai_files: FileStore
    openai_batches: BatchStore
    # Set by start(): moves this replica's share of the OpenAI batches on.
    openai_worker: BatchWorker | None = None
    tokens: VerifiedTokens = field(default_factory=VerifiedTokens)
    # Names this gateway process's metrics in the registry.
    source_id: str = field(default_factory=lambda: f"gateway-{uuid.uuid4().hex[:12]}")
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        settings: Settings,
        registry: Registry | None = None,
        metrics: MetricsRecorder | None = None,
        replicas: Replicas | None = None,
    ) -> Services:
        """Create the clients; connections open lazily, so a dependency down at start-up
        only makes `/health/ready` fail until it is back."""
        store = ResultStore.from_settings(settings)
        registry = registry or RayRegistry.from_settings(settings)
        publisher = Publisher(str(settings.amqp_url), timeout_s=settings.io_timeout_s)
        metrics = metrics or MetricsRecorder()
        caller = ModelCaller(
            replicas or ServeReplicas(),
            ResultCache(
                store.redis,
                prefix=settings.redis_prefix,
                max_entry_bytes=settings.cache_max_entry_bytes,
            ),
            metrics,
            default_timeout_s=settings.infer_timeout_s,
        )
        webhooks = _WebhookQueue(settings, publisher, store)
        users = UserStore(store.redis, prefix=settings.redis_prefix)
        limits = LimitStore(
            store.redis, prefix=settings.redis_prefix, defaults=UserLimits.defaults(settings)
        )
        configured_key = settings.jwt_secret
        services = cls(
            settings=settings,
            store=store,
            users=users,
            publisher=publisher,
            # Instances re-register every ping interval: a restarted registry knows them all
            # again within one; three leave room for a slow one.
            catalog=ModelCatalog(
                registry,
                ttl_s=settings.model_cache_ttl_s,
                grace_s=3 * settings.ping_interval_s,
                stale_s=max(60.0, 6 * settings.ping_interval_s),
            ),
            registry=registry,
            metrics=metrics,
            notifications=TaskNotifications(
                store, str(settings.redis_url), timeout_s=settings.io_timeout_s
            ),
            submitter=Submitter(
                store,
                publisher,
                IdempotencyKeys(
                    store.redis, prefix=settings.redis_prefix, ttl_s=settings.result_ttl_s
                ),
                caller,
                io_timeout_s=settings.io_timeout_s,
                metrics=metrics,
                enqueue_webhook=webhooks.enqueue,
                limits=limits.defaults.submit_limits(),
                fair_share=settings.fair_share,
            ),
            caller=caller,
            webhooks=webhooks,
            switches=ModelSwitches(
                store.redis, prefix=settings.redis_prefix, cache_s=settings.disabled_cache_s
            ),
            dead_letters=DeadLetters(publisher, store),
            signing_key=SigningKey(
                store.redis,
                prefix=settings.redis_prefix,
                configured=configured_key.get_secret_value() if configured_key else None,
            ),
            accounts=AccountCache(users, ttl_s=settings.account_cache_s),
            passwords=PasswordHashing(
                workers=settings.password_hash_workers, queue=settings.password_hash_queue
            ),
            logins=LoginThrottle(
                store.redis,
                prefix=settings.redis_prefix,
                policy=LoginPolicy(
                    per_login_and_address=settings.login_failures_per_login,
                    per_address=settings.login_failures_per_address,
                    max_delay_s=settings.login_max_delay_s,
                    window_s=settings.login_failure_window_s,
                ),
            ),
            address_buckets=TokenBuckets(store.redis, prefix=f"{settings.redis_prefix}:rate-of"),
            limits=limits,
            leases=Leases(store.redis, prefix=settings.redis_prefix),
            openai_files=FileStore(
                store.redis, prefix=settings.redis_prefix, ttl_s=settings.openai_file_ttl_s
            ),
            openai_batches=BatchStore(
                store.redis, prefix=settings.redis_prefix, ttl_s=settings.openai_file_ttl_s
            ),
        )
        services.notifications.on_expired = services.finished
        return services

    def start(self) -> None:
        """Start the background work: the task subscriber, the metrics push, renewing the
        leases of open streams, and moving OpenAI batches on."""
        self.notifications.start()
        self._spawn(self.leases.renew_forever())
        self.openai_worker = BatchWorker(self, self.openai_batches, self.openai_files)
        self._spawn(self.openai_worker.run_forever())
        self._spawn(
            report_metrics_forever(
                self.registry, self.source_id, self.metrics.snapshot, self.settings.ping_interval_s
            )
        )

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        self._background.append(asyncio.get_running_loop().create_task(coroutine))  # type: ignore[arg-type]

    async def push_metrics(self) -> None:
        await self.registry.report_metrics(self.source_id, self.metrics.snapshot())

    async def finished(self, task_id: str, model: str, transition: Transition) -> None:
        """What follows a task the gateway itself made final (cancelled, expired)."""
        if not transition.written or transition.status is None:
            return
        self.metrics.inc(TASKS_FINISHED, model, transition.status.value)
        if transition.webhook_url:
            await self.enqueue_webhook(task_id)

    async def enqueue_webhook(self, task_id: str) -> None:
        await self.webhooks.enqueue(task_id)

    async def replica_reports(self) -> list[tuple[str, InstanceDetail, ReplicaStatus]]:
        """Every live replica that has reported a status: its model, its registry entry and
        its latest report (node, memory, counts).

        Raises:
            RegistryUnavailable: the registry did not answer.
        """
        reports = []
        for model in await self.catalog.live():
            for detail in await self.registry.instances(model.view.name) or []:
                if detail.status is not None:
                    reports.append((model.view.name, detail, detail.status))
        return reports

    async def take_call(self, user: str, model: str) -> dict[str, str]:
        """A token for a synchronous call from the user's submit bucket; the rate-limit
        headers to answer with.

        Raises:
            TooManyRequests: the bucket is empty.
        """
        taken = await self.store.take_call(user, self.submitter.limits)
        if taken.refused is not None:
            raise refusal(taken, model)
        return Accepted([], taken.tokens_left, taken.rate, taken.burst).rate_headers()

    async def ensure_enabled(self, model: str) -> None:
        """Refuse new work for a model an admin disabled.

        Raises:
            ModelDisabled: 503, saying who disabled it and why.
        """
        flag = await self.switches.get(model)
        if flag is not None:
            reason = f": {flag.reason}" if flag.reason else ""
            raise ModelDisabled(
                f"model {model!r} is disabled by an administrator{reason}; queued tasks still "
                "finish and results stay readable"
            )

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        await self.notifications.close()
        await self.publisher.close()
        await self.store.close()
        self.passwords.close()
