"""Waits until every Serve application is RUNNING (`serve status`); exits non-zero as soon as one
fails, or Serve says a replica cannot be scheduled (not enough CPU or memory left), printing
Serve's own message for every application that is not RUNNING."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import yaml

FAILED = ("DEPLOY_FAILED", "UNHEALTHY")
# What Serve's status says of a replica that finds no node with room for it.
UNSCHEDULABLE = "to be scheduled"


def problems(status: dict[str, Any]) -> dict[str, str]:
    """Applications that will not come up by waiting, with Serve's message for each."""
    found = {}
    for name, app in (status.get("applications") or {}).items():
        messages = [app.get("message") or ""]
        deployments = app.get("deployments") or {}
        messages += [d.get("message") or "" for d in deployments.values()]
        if app.get("status") in FAILED or any(UNSCHEDULABLE in m for m in messages):
            found[name] = "\n".join(m for m in messages if m) or str(app.get("status"))
    return found


def not_running(status: dict[str, Any]) -> dict[str, str]:
    """Every application that is not RUNNING, with what Serve says about it."""
    found = {}
    for name, app in (status.get("applications") or {}).items():
        if app.get("status") != "RUNNING":
            deployments = app.get("deployments") or {}
            messages = [app.get("message") or ""] + [
                f"{d_name}: {d.get('status')}: {d.get('message') or ''}"
                for d_name, d in deployments.items()
                if d.get("status") != "HEALTHY"
            ]
            found[name] = f"{app.get('status')}\n" + "\n".join(m for m in messages if m)
    return found


def report(apps: dict[str, str]) -> None:
    for name, message in apps.items():
        print(f"--- {name}: {message}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    last = ""
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["serve", "status"], capture_output=True, text=True, check=False
        ).stdout
        status = yaml.safe_load(out) or {}
        apps = status.get("applications") or {}
        states = {name: app.get("status") for name, app in apps.items()}
        if states and all(state == "RUNNING" for state in states.values()):
            print(json.dumps(states))
            return 0
        stuck = problems(status)
        if stuck:
            print("these applications will not start:", file=sys.stderr)
            report(not_running(status))
            return 1
        if json.dumps(states) != last:
            last = json.dumps(states)
            print(last)
        time.sleep(2)
    print("timed out waiting for applications to be RUNNING:", file=sys.stderr)
    report(not_running(status))
    return 1


if __name__ == "__main__":
    sys.exit(main())
