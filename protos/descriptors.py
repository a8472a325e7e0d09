"""Ship message types between processes as descriptors, so no process imports another's code.

A model replica sends its request and response descriptors (a `FileDescriptorSet` with every
dependency) to the registry; the gateway rebuilds working message classes from them in a
private descriptor pool per model, so two models may even use files of the same name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message

from protos.validation import MessageValidator


def descriptor_set(*message_classes: type[Message]) -> bytes:
    """Serialize the files defining `message_classes` and all their imports, dependencies first."""
    ordered: list[FileDescriptor] = []
    seen: set[str] = set()

    def visit(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            visit(dependency)
        ordered.append(file)

    for cls in message_classes:
        visit(cls.DESCRIPTOR.file)
    fds = descriptor_pb2.FileDescriptorSet()
    for file in ordered:
        file.CopyToProto(fds.file.add())
    return fds.SerializeToString(deterministic=True)


def fingerprint(request_cls: type[Message], response_cls: type[Message]) -> str:
    """A short digest of the two message types and their full schemas."""
    digest = hashlib.sha256()
    digest.update(request_cls.DESCRIPTOR.full_name.encode())
    digest.update(b"\0")
    digest.update(response_cls.DESCRIPTOR.full_name.encode())
    digest.update(b"\0")
    digest.update(descriptor_set(request_cls, response_cls))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class MessageTypes:
    """The request and response classes of one model, rebuilt from its descriptors, and the
    validator of request bodies given as JSON."""

    request: type[Message]
    response: type[Message]
    request_validator: MessageValidator

    @classmethod
    def from_descriptor_set(
        cls, serialized: bytes, request_name: str, response_name: str
    ) -> MessageTypes:
        """Build both classes in a fresh pool from `descriptor_set()` output.

        Raises:
            KeyError: a named message is not defined in the set.
            TypeError: the set is not a valid FileDescriptorSet.
        """
        fds = descriptor_pb2.FileDescriptorSet.FromString(serialized)
        pool = descriptor_pool.DescriptorPool()
        for file_proto in fds.file:
            pool.Add(file_proto)
        request = message_factory.GetMessageClass(pool.FindMessageTypeByName(request_name))
        return cls(
            request=request,
            response=message_factory.GetMessageClass(pool.FindMessageTypeByName(response_name)),
            request_validator=MessageValidator(request.DESCRIPTOR),
        )
