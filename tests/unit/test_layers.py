"""The gateway never imports model code: it works from the descriptors in the registry."""

from __future__ import annotations

import subprocess
import sys


def test_gateway_imports_no_model_module():
    probe = (
        "import sys, app.main;"
        "print(sorted(m for m in sys.modules if m.startswith('deployments')"
        " or (m.startswith('protos.') and m.endswith('_pb2') and m != 'protos.task_pb2')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out
