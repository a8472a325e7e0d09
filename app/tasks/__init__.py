"""Tasks: their records in Redis and every state change (`records`), how the gateway accepts
them (`submission`), idempotency keys, and dead letters. `ResultStore` (`store`) is the one
object the rest of the platform holds: the task records with fair share, admission, chunks
and webhook state beside them."""
