"""A gRPC load generator for the Open Inference Protocol, in a process of its own: keeps
CONCURRENCY `ModelInfer` calls in flight for SECONDS and prints one JSON line (calls per
second, p50 in ms, errors). grpc.aio runs on gRPC's C core; the calls are built once.

    python -m benchmarks.grpc_load ADDRESS AUTH MODEL INPUTS_JSON CONCURRENCY SECONDS

INPUTS_JSON maps each FP32 input's name to its value.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import grpc

from protos import grpc_predict_v2_pb2 as pb
from protos.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub


async def main(argv: list[str]) -> int:
    address, auth, model, inputs_json = argv[1:5]
    concurrency, seconds = int(argv[5]), float(argv[6])
    request = pb.ModelInferRequest(
        model_name=model,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=name,
                datatype="FP32",
                shape=[1],
                contents=pb.InferTensorContents(fp32_contents=[value]),
            )
            for name, value in json.loads(inputs_json).items()
        ],
    )
    metadata = (("authorization", auth),)
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        infer = GRPCInferenceServiceStub(channel).ModelInfer
        await infer(request, metadata=metadata)  # connected and warm
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    await infer(request, metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    print(json.dumps({"rate": len(latencies) / elapsed, "p50_ms": p50, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
