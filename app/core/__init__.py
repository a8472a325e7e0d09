"""Shared kernel: settings, errors, the task envelope, the broker and result-store clients.

Every other package may import from here; this package imports only `protos` (generated code).
"""
