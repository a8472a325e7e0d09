"""The gateway's /openapi.json is the contract: `schemathesis run --checks all` against the live
document (every static route and every live model's operations) finds nothing.

All checks: no server error, documented statuses and content types, responses (and SSE events)
matching their schemas, schema-valid requests accepted and schema-violating ones refused,
authentication enforced, and the stateful phase following the document's links.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.iris import Iris
from deployments.summarizer import Summarizer
from tests.utils.e2e import listed, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = 40


# Its own bound: the fuzz run alone may take minutes, past the suite's per-test default.
@pytest.mark.timeout(1200)
def test_schemathesis_all_checks_pass_on_the_live_document(gateway_url, auth, deploy_model, http):
    headers = auth()
    names = [deploy_model(Iris), deploy_model(Summarizer)]
    wait_for(lambda: set(names) <= set(listed(http, headers)))
    document = http.get("/openapi.json").json()
    for name in names:
        for path in ("tasks", "batches", "result"):
            assert f"/models/{name}/{path}" in document["paths"]
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{gateway_url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: {headers['Authorization']}",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--exclude-path",
        "/metrics",  # plain Prometheus text: no schema to check it against
        "--workers",
        "2",
        "--generation-deterministic",
        "--no-color",
    ]
    done = subprocess.run(
        command,
        cwd=ROOT,  # schemathesis.toml: the batch routes' 413
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = done.stdout[-20_000:] + done.stderr[-5_000:]
    # The failures again at the end: a CI log may keep only the end of a long message.
    failures = re.search(r"=+ FAILURES =+\n(.*?)(?:\n=+ \w)", done.stdout, re.S)
    assert done.returncode == 0, report + (failures.group(1)[:8_000] if failures else "")
    # "N generated, N passed" and nothing failed (warnings, e.g. that the admin routes only
    # answered this non-admin 403, are not failures).
    cases = re.search(r"Test cases:\s*\n\s*(\d+) generated, (\d+) passed\s*\n", report)
    assert cases and cases.group(1) == cases.group(2) and int(cases.group(1)) > 0, report
