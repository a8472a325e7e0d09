"""Per-user quotas: what each user may do at once and how fast, enforced in Redis so every
gateway replica enforces the same limit.

- submit calls per second (a token bucket, taken in the same atomic step that creates the
  tasks: `app.core.store.ResultStore.admit`), and tasks queued or running per model;
- event streams and long-polls open at once, and webhook deliveries under way (`leases`);
- the highest priority a user may give a task.

Each user's limits are the settings' defaults unless an admin overrides them (`limits`).
A limit reached is a 429 with `Retry-After` and the IETF `RateLimit`/`RateLimit-Policy`
headers (`headers`), in the error shape of every other answer.
"""
