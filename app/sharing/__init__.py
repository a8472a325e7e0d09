"""Sharing the platform: fair share inside each model's queue and per-user quotas, for the
gateway and the model replicas alike, enforced in Redis so every replica enforces the same.

- fair share (`fair_share`): each user's window of a model's work queue; what they submit
  beyond it is held and moved in as their tasks end (`releaser`, run by model replicas);
  priorities order a user's own held work;
- admission (`admission`): a submit's limits checked, its token taken and its tasks created
  and routed in one atomic step; synchronous calls take from the same bucket;
- quotas: submit calls per second (token buckets, `ratelimit`), tasks queued or running per
  model, event streams and long-polls open at once and webhook deliveries under way
  (`leases`), the highest priority a user may give a task. Each user's limits are the
  settings' defaults unless an admin overrides them (`limits`); `usage` reads them back.
A limit reached is a 429 with `Retry-After` and the IETF `RateLimit`/`RateLimit-Policy`
headers (`headers`, `refusals`), in the error shape of every other answer.
"""
