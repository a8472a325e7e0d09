"""Logging set-up for the platform's own loggers inside Ray processes."""

from __future__ import annotations

import logging
import sys

PLATFORM_LOGGERS = ("app", "deployments", "registry")


def configure_logging(level: int = logging.INFO) -> None:
    """Send the platform's loggers to stderr (which Ray keeps per worker), once per process."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in PLATFORM_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(getattr(h, "_platform", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(formatter)
            handler._platform = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.propagate = False
