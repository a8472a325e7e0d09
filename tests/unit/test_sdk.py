from __future__ import annotations

import pytest

from deployments.sdk import InvalidInput, model, spec_of
from protos.echo_pb2 import EchoRequest, EchoResponse
from tests.utils.factories import unique


def test_decorated_class_stays_usable_without_services():
    @model(name=unique("ok"), request=EchoRequest, response=EchoResponse)
    class Shout:
        """Shouts.

        Second paragraph."""

        async def process_request(self, request: EchoRequest) -> EchoResponse:
            if not request.text:
                raise InvalidInput("text must not be empty")
            return EchoResponse(text=request.text.upper())

    import asyncio

    assert asyncio.run(Shout().process_request(EchoRequest(text="hi"))).text == "HI"
    spec = spec_of(Shout)
    assert spec.request is EchoRequest and spec.response is EchoResponse
    assert spec.description == "Shouts.\n\nSecond paragraph."
    with pytest.raises(InvalidInput):
        asyncio.run(Shout().process_request(EchoRequest()))


def _decorate(cls, **kwargs):
    arguments = {"name": unique("m"), "request": EchoRequest, "response": EchoResponse, **kwargs}
    return model(**arguments)(cls)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "needs a method"),
        ({"process_request": lambda self, r: r}, "must be `async def`"),
        ({"process_request": (lambda: None)}, "must be `async def`"),
    ],
)
def test_bad_class__type_error_with_fix(body, message):
    with pytest.raises(TypeError, match=message):
        _decorate(type("Bad", (), body))


def test_wrong_arity__type_error():
    class Bad:
        async def process_request(self):
            return None

    with pytest.raises(TypeError, match="exactly one argument"):
        _decorate(Bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "Upper"},
        {"name": "has space"},
        {"name": ""},
        {"name": "x" * 64},
        {"request": dict},
        {"response": EchoRequest()},
        {"max_attempts": 0},
        {"min_replicas": 3, "max_replicas": 2},
    ],
)
def test_bad_arguments__type_error(kwargs):
    class Fine:
        async def process_request(self, request):
            return request

    with pytest.raises(TypeError):
        _decorate(Fine, **kwargs)


def test_duplicate_name_in_one_process__type_error():
    name = unique("dup")

    class First:
        async def process_request(self, request):
            return request

    class Second:
        async def process_request(self, request):
            return request

    _decorate(First, name=name)
    with pytest.raises(TypeError, match="already used"):
        _decorate(Second, name=name)


def test_decorator_needs_keywords():
    with pytest.raises(TypeError):
        model("x", EchoRequest, EchoResponse)  # type: ignore[misc]
