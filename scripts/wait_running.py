"""Waits until every Serve application is RUNNING; exits non-zero on failure or timeout."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import yaml


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    last = ""
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
        failed = {name: s for name, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")}
        if failed:
            print(out, file=sys.stderr)
            return 1
        if json.dumps(states) != last:
            last = json.dumps(states)
            print(last)
        time.sleep(2)
    print("timed out waiting for applications to be RUNNING", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
