from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class File(_message.Message):
    __slots__ = ("content",)
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    def __init__(self, content: _Optional[bytes] = ...) -> None: ...

class ExampleModelRequest(_message.Message):
    __slots__ = ("file", "author")
    FILE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    file: File
    author: str
    def __init__(self, file: _Optional[_Union[File, _Mapping]] = ..., author: _Optional[str] = ...) -> None: ...

class ExampleModelResponse(_message.Message):
    __slots__ = ("summary", "fixed_author")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    FIXED_AUTHOR_FIELD_NUMBER: _ClassVar[int]
    summary: str
    fixed_author: str
    def __init__(self, summary: _Optional[str] = ..., fixed_author: _Optional[str] = ...) -> None: ...
