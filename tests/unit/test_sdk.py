from __future__ import annotations

import re

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
    ("kwargs", "says"),
    [
        ({"name": "Upper"}, "model name 'Upper' is invalid"),
        ({"name": "has space"}, "model name 'has space' is invalid"),
        ({"name": ""}, "model name '' is invalid"),
        ({"name": "x" * 64}, "1-63 lowercase letters"),
        ({"request": dict}, "request= must be a generated protobuf message class"),
        ({"response": EchoRequest()}, "response= must be a generated protobuf message class"),
        ({"max_attempts": 0}, "max_attempts: Input should be greater than or equal to 1"),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas must not exceed max_replicas"),
    ],
)
def test_bad_arguments__type_error(kwargs, says):
    class Fine:
        async def process_request(self, request):
            return request

    with pytest.raises(TypeError, match=re.escape(says)):
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
    with pytest.raises(TypeError, match="positional arguments"):
        model("x", EchoRequest, EchoResponse)  # type: ignore[misc]


class _Batches:
    async def process_request(self, request):
        return request

    async def process_batch(self, requests):
        return requests


def test_batching_needs_process_batch__named_at_import():
    class OneByOne:
        async def process_request(self, request):
            return request

    with pytest.raises(TypeError, match=r"max_batch_size=8 needs a method `async def process_b"):
        _decorate(OneByOne, max_batch_size=8)
    _decorate(OneByOne)  # batch of one: unchanged


def _sync_batch(self, requests):
    return requests


async def _no_list_argument(self):
    return []


@pytest.mark.parametrize(
    ("process_batch", "message"),
    [
        (_sync_batch, "process_batch must be `async def`"),
        (_no_list_argument, "exactly one argument besides self"),
    ],
)
def test_bad_process_batch__type_error(process_batch, message):
    body = {"process_request": _Batches.process_request, "process_batch": process_batch}
    with pytest.raises(TypeError, match=message):
        _decorate(type("Bad", (), body), max_batch_size=4)


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"batch_wait_timeout_s": -1}])
def test_bad_batch_settings__type_error(kwargs):
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        _decorate(_Batches, **kwargs)


def test_an_operator_override_cannot_turn_on_batching_without_process_batch():
    from deployments.sdk import build_app

    class OneByOne:
        async def process_request(self, request):
            return request

    cls = _decorate(OneByOne)
    with pytest.raises(TypeError, match="needs a method `async def process_batch"):
        build_app(cls, overrides={"max_batch_size": 16})


def test_num_gpus_reaches_the_replica_actor_options_next_to_num_cpus():
    from deployments.sdk import build_app

    gpu = _decorate(_Batches, num_gpus=0.5, num_cpus=1)
    options = build_app(gpu)._bound_deployment.ray_actor_options
    assert options["num_cpus"] == 1.0 and options["num_gpus"] == 0.5
    overridden = build_app(gpu, overrides={"num_gpus": 2})._bound_deployment.ray_actor_options
    assert overridden["num_gpus"] == 2
    cpu_only = build_app(_decorate(_Batches))._bound_deployment.ray_actor_options
    assert "num_gpus" not in cpu_only  # a CPU model may run on any node
    with pytest.raises(TypeError, match="num_gpus"):
        _decorate(_Batches, num_gpus=-1)


def test_model_replicas_keep_their_serve_variables_whatever_actor_options_are_given():
    """Without RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=0 every stopping model replica
    would wait out the front door's 30 s deregistration window."""
    from deployments._runtime.application import MODEL_SERVE_ENV
    from deployments.sdk import build_app

    cls = _decorate(_Batches)
    default = build_app(cls)._bound_deployment.ray_actor_options
    given = build_app(
        cls, ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": {"MINE": "1"}}}
    )._bound_deployment.ray_actor_options
    for options in (default, given):
        assert MODEL_SERVE_ENV.items() <= options["runtime_env"]["env_vars"].items()
    assert given["num_cpus"] == 0 and given["runtime_env"]["env_vars"]["MINE"] == "1"


def test_a_fixed_replica_count_is_the_models_bounds_and_widens_its_fair_share_window():
    """Two replicas each holding `prefetch` tasks: one user's window must let both work."""
    from deployments._runtime.spec import effective_spec, model_info
    from deployments.sdk import build_app

    cls = _decorate(_Batches)
    app = build_app(cls, num_replicas=2)
    deployment = app._bound_deployment
    assert deployment.num_replicas == 2
    overrides = deployment.init_args[1]
    assert overrides["min_replicas"] == overrides["max_replicas"] == 2
    info = model_info(effective_spec(cls, overrides), default_prefetch=16)
    assert info.fair_share_window == 32
    assert model_info(effective_spec(cls, None), default_prefetch=16).fair_share_window == 16
