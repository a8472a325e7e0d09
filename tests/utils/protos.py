"""Compile a test .proto at test time (grpc_tools) into working message classes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

PROTOS = Path(__file__).resolve().parents[1] / "protos"


def compile_messages(proto: str, out_dir: Path) -> dict[str, type[Message]]:
    """All messages of tests/protos/<proto>, by full name, built in a private pool."""
    import grpc_tools

    out = out_dir / "set.pb"
    include = Path(grpc_tools.__file__).parent / "_proto"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            proto,
        ],
        check=True,
    )
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:
        pool.Add(file)
    main = next(f for f in fds.file if f.name == proto)
    return {
        f"{main.package}.{m.name}": message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{main.package}.{m.name}")
        )
        for m in main.message_type
    }
