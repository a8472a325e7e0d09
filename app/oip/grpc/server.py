"""Starting and stopping the gRPC server of a gateway replica."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from app.core.settings import Settings
from app.oip.grpc.messages import METHODS, SERVICE, pb
from app.oip.grpc.service import InferenceService
from app.services import Services

logger = logging.getLogger(__name__)

# How long calls under way may finish when the replica stops.
GRACE_S = 5.0


async def start_grpc(services: Services, settings: Settings) -> grpc.aio.Server | None:
    """Serve the protocol on `settings.grpc_host:grpc_port` (None when the port is 0); over
    TLS when a certificate and key are set.

    Raises:
        RuntimeError: the address could not be bound.
    """
    if not settings.grpc_port:
        return None
    # The largest message a call may carry: the REST routes' body limit, for the same tensors.
    limit = settings.max_body_bytes
    server = grpc.aio.server(
        options=[
            # Every gateway replica on a node binds the same port; the kernel spreads calls.
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
    )
    service = InferenceService(services)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(service, name),
            request_deserializer=getattr(pb, request).FromString,
            response_serializer=getattr(pb, response).SerializeToString,
        )
        for name, request, response in METHODS
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    if settings.grpc_tls_cert_file and settings.grpc_tls_key_file:
        credentials = grpc.ssl_server_credentials(
            [
                (
                    Path(settings.grpc_tls_key_file).read_bytes(),
                    Path(settings.grpc_tls_cert_file).read_bytes(),
                )
            ]
        )
        bound = server.add_secure_port(address, credentials)
    else:
        bound = server.add_insecure_port(address)
    if not bound:
        raise RuntimeError(f"cannot serve gRPC on {address}")
    await server.start()
    logger.info("Open Inference Protocol over gRPC on %s", address)
    return server


async def stop_grpc(server: grpc.aio.Server | None) -> None:
    """Stop taking calls; let those under way finish for a few seconds."""
    if server is not None:
        await server.stop(GRACE_S)
