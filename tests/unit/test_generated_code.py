"""The committed *_pb2 files must be exactly what scripts/gen_protos.sh produces."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_protobuf_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts/gen_protos.sh"), str(tmp_path)], check=True)
    generated = sorted(p.relative_to(tmp_path) for p in (tmp_path / "protos").iterdir())
    assert generated, "gen_protos.sh produced nothing"
    stale = [str(p) for p in generated if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert not stale, f"regenerate with scripts/gen_protos.sh: {stale}"
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "protos").glob("*_pb2*.py*"))
    assert committed == generated, "a *_pb2 file has no .proto source, or the reverse"
