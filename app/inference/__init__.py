"""Calling a model now: the gateway's caller through Serve handles (`caller`), the outcome a
replica answers with (`outcome`), and the cache of identical requests (`cache`), which both
submits and synchronous calls read and replicas fill."""
