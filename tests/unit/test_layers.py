"""Which layer may import which (ARCHITECTURE.md), and the gateway never imports model code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("app", "deployments", "registry", "protos")
# The gateway's edge: the app and its clients' wiring, and the modules that speak HTTP or gRPC.
EDGE = ("app.main", "app.services", "app.api", "app.admin")


def imports() -> dict[str, set[str]]:
    """Every project module's imports of project modules (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for top in PROJECT:
        for path in (ROOT / top).rglob("*.py"):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
                elif isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
            found[module] = {n for n in names if n.split(".")[0] in PROJECT}
    return found


def under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def is_front_end(module: str) -> bool:
    """Modules that answer HTTP or gRPC requests: they may use the edge's dependencies."""
    return under(module, *EDGE) or module.endswith(".routes") or under(module, "app.oip.grpc")


def violations(rule) -> list[str]:  # noqa: ANN001 - a predicate
    return sorted(f"{m} imports {d}" for m, ds in imports().items() for d in ds if rule(m, d))


def test_the_kernel_imports_only_itself_and_the_messages():
    assert not violations(lambda m, d: under(m, "app.core") and not under(d, "app.core", "protos"))


def test_the_registry_imports_only_the_kernel():
    assert not violations(
        lambda m, d: under(m, "registry") and not under(d, "app.core", "registry", "protos")
    )


def test_model_replicas_import_no_gateway_module():
    gateway_only = (*EDGE, "app.catalog", "app.openai", "app.oip", "app.push", "app.openapi")
    assert not violations(lambda m, d: under(m, "deployments") and under(d, *gateway_only))


def test_only_front_ends_import_the_edge():
    assert not violations(lambda m, d: under(d, *EDGE) and not is_front_end(m))


def test_capabilities_import_no_model_runtime():
    assert not violations(lambda m, d: under(m, "app") and under(d, "deployments"))


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
