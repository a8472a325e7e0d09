"""Webhooks: which callback URLs are allowed, how deliveries are signed, and the dispatcher that
delivers them from the durable webhook queue (and the Serve replica running it).

The queue itself is shared plumbing (`app.webhooks.queue`): model replicas and the gateway
publish to it without importing this package.
"""
