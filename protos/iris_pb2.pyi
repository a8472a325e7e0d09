from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class IrisRequest(_message.Message):
    __slots__ = ("sepal_length", "sepal_width", "petal_length", "petal_width")
    SEPAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SEPAL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    PETAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PETAL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    sepal_length: float
    sepal_width: float
    petal_length: float
    petal_width: float
    def __init__(self, sepal_length: _Optional[float] = ..., sepal_width: _Optional[float] = ..., petal_length: _Optional[float] = ..., petal_width: _Optional[float] = ...) -> None: ...

class IrisResponse(_message.Message):
    __slots__ = ("species", "probabilities")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SPECIES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    species: str
    probabilities: _containers.ScalarMap[str, float]
    def __init__(self, species: _Optional[str] = ..., probabilities: _Optional[_Mapping[str, float]] = ...) -> None: ...
