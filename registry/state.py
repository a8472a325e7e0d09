"""The registry's logic, free of Ray so it can be unit-tested: who is registered, who is stale."""

from __future__ import annotations

import logging
import uuid

from registry.schemas import (
    InstanceDetail,
    InstanceInfo,
    InstanceState,
    ModelInfo,
    ModelRecord,
    ModelView,
    PingResult,
    RegistrationRefused,
    ReplicaStatus,
    Snapshot,
)

logger = logging.getLogger(__name__)

# Unanswered pings in a row before an instance whose actor still exists is dropped.
MAX_MISSED_PINGS = 2


class RegistryState:
    """Live models and their instances.

    Identity of a model is its name plus its request and response message full names. Each
    instance keeps what it registered; the model is described by its newest instance (the one
    registered last), so a redeploy that changes anything (a field added to a message, the
    version, a setting such as `cache_ttl_s`) shows as soon as a new replica registers, while
    old replicas of a rolling update still run, and the description goes back to an older
    instance's only if the newer ones go first.
    """

    def __init__(self, now: float = 0.0) -> None:
        self._models: dict[str, ModelRecord] = {}
        self._version = 0
        self._registrations = 0
        self.incarnation = uuid.uuid4().hex
        self._started_at = now

    @property
    def version(self) -> int:
        return self._version

    def register(
        self,
        model: ModelInfo,
        instance: InstanceInfo,
        now: float,
        status: ReplicaStatus | None = None,
    ) -> bool:
        """Add or refresh an instance; return True when it was not known before.

        Raises:
            RegistrationRefused: the name is taken by other message types.
        """
        record = self._models.get(model.name)
        if record is not None and (
            record.info.request_type != model.request_type
            or record.info.response_type != model.response_type
        ):
            raise RegistrationRefused(
                f"model {model.name!r} is already registered with request "
                f"{record.info.request_type} and response {record.info.response_type}; "
                f"refusing {model.request_type} -> {model.response_type}. Use another model "
                "name, or delete the running model first."
            )
        if record is None:
            record = self._models[model.name] = ModelRecord(info=model)
            self._version += 1
        existing = record.instances.get(instance.instance_id)
        if existing is not None:
            existing.last_seen = now
            existing.missed_pings = 0
            existing.status = status or existing.status
            existing.model = model
            self._describe(record)
            return False
        self._registrations += 1
        record.instances[instance.instance_id] = InstanceState(
            info=instance,
            registered_at=now,
            last_seen=now,
            status=status,
            model=model,
            order=self._registrations,
        )
        self._version += 1
        self._describe(record)
        return True

    def _describe(self, record: ModelRecord) -> None:
        """Describe the model as its newest instance does (a change bumps the version)."""
        newest = max(
            record.instances.values(),
            key=lambda state: (state.registered_at, state.order),
            default=None,
        )
        if newest is None or newest.model is None or newest.model == record.info:
            return
        if newest.model.fingerprint != record.info.fingerprint:
            logger.warning(
                "model %s: schema changed (%s -> %s)",
                record.info.name,
                record.info.fingerprint,
                newest.model.fingerprint,
            )
        record.info = newest.model
        self._version += 1

    def details(self, model_name: str) -> list[InstanceDetail] | None:
        """The live instances of a model, oldest first; None for a model it does not know."""
        record = self._models.get(model_name)
        if record is None:
            return None
        return [
            InstanceDetail(
                instance_id=instance_id,
                registered_at=state.registered_at,
                last_seen=state.last_seen,
                missed_pings=state.missed_pings,
                status=state.status,
            )
            for instance_id, state in sorted(
                record.instances.items(), key=lambda item: item[1].registered_at
            )
        ]

    def logout(self, model_name: str, instance_id: str) -> bool:
        """Remove an instance; False if unknown.

        A model goes with its last instance, unless it scales to zero: then it stays,
        dormant, until `drop_model` (its Serve application is gone).
        """
        record = self._models.get(model_name)
        if record is None or record.instances.pop(instance_id, None) is None:
            return False
        if not record.instances and not record.info.scale_to_zero:
            del self._models[model_name]
        else:
            self._describe(record)
        self._version += 1
        return True

    def dormant(self) -> list[ModelInfo]:
        """Models kept with no instance (scaled to zero)."""
        return [r.info for r in self._models.values() if not r.instances]

    def drop_model(self, model_name: str) -> bool:
        """Forget a model with no instance left; False if unknown or still running."""
        record = self._models.get(model_name)
        if record is None or record.instances:
            return False
        del self._models[model_name]
        self._version += 1
        return True

    def instances(self) -> list[tuple[str, InstanceInfo]]:
        """Every (model name, instance) pair, for the pinger."""
        return [
            (name, state.info)
            for name, record in self._models.items()
            for state in record.instances.values()
        ]

    def record_ping(
        self, model_name: str, instance_id: str, result: PingResult, now: float
    ) -> bool:
        """Apply one ping's result; return True when it dropped the instance.

        An answer resets the instance's missed pings. An actor that no longer exists is
        dropped at once; one that does not answer is dropped at its `MAX_MISSED_PINGS`-th
        missed ping in a row (a replica busy for a moment survives one).
        """
        state = self._instance(model_name, instance_id)
        if state is None:
            return False
        if result is PingResult.ALIVE:
            state.last_seen = now
            state.missed_pings = 0
            return False
        state.missed_pings += 1
        if result is PingResult.GONE or state.missed_pings >= MAX_MISSED_PINGS:
            return self.logout(model_name, instance_id)
        return False

    def drop_stale(self, now: float, max_age_s: float) -> list[tuple[str, str]]:
        """Drop instances not seen for `max_age_s` (those the pinger cannot reach)."""
        dropped = [
            (name, state.info.instance_id)
            for name, record in self._models.items()
            for state in record.instances.values()
            if now - state.last_seen > max_age_s
        ]
        for name, instance_id in dropped:
            self.logout(name, instance_id)
        return dropped

    def snapshot(self, now: float = 0.0) -> Snapshot:
        return Snapshot(
            incarnation=self.incarnation,
            age_s=max(0.0, now - self._started_at),
            version=self._version,
            models=tuple(
                ModelView(
                    name=name,
                    request_type=record.info.request_type,
                    response_type=record.info.response_type,
                    descriptor_set=record.info.descriptor_set,
                    fingerprint=record.info.fingerprint,
                    description=record.info.description,
                    instances=len(record.instances),
                    dormant=not record.instances,
                    version=record.info.version,
                    app_name=record.info.app_name,
                    deployment=record.info.deployment,
                    cache_ttl_s=record.info.cache_ttl_s,
                    timeout_s=record.info.timeout_s,
                    fair_share_window=record.info.fair_share_window,
                    openai_endpoint=record.info.openai_endpoint,
                    openai_input=record.info.openai_input,
                    openai_output=record.info.openai_output,
                    streams=record.info.streams,
                )
                for name, record in sorted(self._models.items())
            ),
        )

    def _instance(self, model_name: str, instance_id: str) -> InstanceState | None:
        record = self._models.get(model_name)
        return None if record is None else record.instances.get(instance_id)
