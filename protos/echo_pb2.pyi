from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EchoRequest(_message.Message):
    __slots__ = ("text", "delay_ms", "fail_with")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    FAIL_WITH_FIELD_NUMBER: _ClassVar[int]
    text: str
    delay_ms: int
    fail_with: str
    def __init__(self, text: _Optional[str] = ..., delay_ms: _Optional[int] = ..., fail_with: _Optional[str] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("text", "replica")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    text: str
    replica: str
    def __init__(self, text: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...
