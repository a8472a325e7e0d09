"""The protocol's messages, for the gateway's gRPC service.

They are the platform's own (`protos/grpc_predict_v2.proto`), except in a process where
tritonclient is installed: its `grpc_service.proto` defines the same `inference` messages
(same names, same wire format), and protobuf's pool refuses a second definition, so a process
that serves the protocol and calls it with tritonclient (the tests) uses tritonclient's.
"""

from __future__ import annotations

from typing import Any


def _messages() -> Any:
    try:
        from tritonclient.grpc import service_pb2
    except ImportError:
        from protos import grpc_predict_v2_pb2

        return grpc_predict_v2_pb2
    return service_pb2


pb = _messages()

SERVICE = "inference.GRPCInferenceService"
# Each call: its name, its request message, its response message.
METHODS = (
    ("ServerLive", "ServerLiveRequest", "ServerLiveResponse"),
    ("ServerReady", "ServerReadyRequest", "ServerReadyResponse"),
    ("ModelReady", "ModelReadyRequest", "ModelReadyResponse"),
    ("ServerMetadata", "ServerMetadataRequest", "ServerMetadataResponse"),
    ("ModelMetadata", "ModelMetadataRequest", "ModelMetadataResponse"),
    ("ModelInfer", "ModelInferRequest", "ModelInferResponse"),
)
