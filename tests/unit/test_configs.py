"""The shipped deployment configs are valid for the Ray release we pin."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_yaml_matches_ray_launcher_schema():
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    start = " ".join(config["head_start_ray_commands"])
    assert "--port 6390" in start and "6379" not in start


def test_serve_config_is_a_valid_serve_deploy_schema():
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config)
    apps = {app.name: app for app in schema.applications}
    assert apps["gateway"].route_prefix == "/"
    for name in ("summarizer", "iris", "embedder", "python-docs"):
        assert apps[name].route_prefix is None
        assert apps[name].import_path == f"deployments.{name.replace('-', '_')}:app"
        assert apps[name].runtime_env["env_vars"]["APP_REDIS_URL"]
    # `echo` is a test model (it sleeps on request): the tests deploy it themselves.
    assert "echo" not in apps


def test_every_model_autoscales_on_its_backlog_with_the_addresses_of_its_environment(monkeypatch):
    """No model entry fixes a replica count or restates Serve's autoscaling_config: each one
    builds its backlog policy from its @model bounds and the broker address of its env."""
    import importlib

    from app.core.settings import get_settings

    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    for app in config["applications"]:
        if app["name"] == "gateway":
            continue  # Serve's own policy on ongoing requests
        for deployment in app.get("deployments", []):
            assert "num_replicas" not in deployment, app["name"]
            assert "autoscaling_config" not in deployment, app["name"]
        amqp_url = "amqp://u:p@rabbit.internal:5672/"
        monkeypatch.setenv("APP_AMQP_URL", amqp_url)  # what the app's runtime_env sets
        get_settings.cache_clear()
        module, _, attr = app["import_path"].partition(":")
        built = getattr(importlib.import_module(module), attr)(app.get("args", {}))
        options = built._bound_deployment._deployment_config.autoscaling_config
        assert options is not None and options.max_replicas >= 2, app["name"]
        policy = options.policy
        assert policy.policy_function.endswith(":QueueBacklogPolicy")
        assert policy.policy_kwargs["amqp_url"] == amqp_url
        assert policy.policy_kwargs["queue"] == app["name"]
    get_settings.cache_clear()


def test_deploy_renders_the_addresses_and_http_bind_from_the_environment():
    import importlib.util

    spec = importlib.util.spec_from_file_location("render", ROOT / "scripts/render_config.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    rendered = render.render(
        config,
        {
            "APP_REDIS_URL": "redis://redis.internal:6379/0",
            "APP_AMQP_URL": "amqp://u:p@rabbit.internal:5672/",
            "SERVE_HTTP_HOST": "0.0.0.0",  # noqa: S104 - what a cluster binds
            "SERVE_HTTP_PORT": "8001",
        },
    )
    assert rendered["http_options"] == {"host": "0.0.0.0", "port": 8001}  # noqa: S104
    for app in rendered["applications"]:
        variables = app["runtime_env"]["env_vars"]
        assert variables["APP_REDIS_URL"] == "redis://redis.internal:6379/0"
        assert variables["APP_AMQP_URL"] == "amqp://u:p@rabbit.internal:5672/"
    unchanged = render.render(yaml.safe_load((ROOT / "serve_config.yaml").read_text()), {})
    assert unchanged["http_options"]["host"] == "127.0.0.1"


def test_gateway_holds_idle_waiters_and_autoscales_with_serves_policy():
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    gateway = next(a for a in config["applications"] if a["name"] == "gateway")
    deployments = {d["name"]: d for d in gateway["deployments"]}
    assert deployments["gateway"]["max_ongoing_requests"] >= 1000
    autoscaling = deployments["gateway"]["autoscaling_config"]
    assert autoscaling["min_replicas"] >= 1 and "policy" not in autoscaling
    assert deployments["webhooks"]["num_replicas"] >= 1


def test_every_model_app_in_serve_config_builds_from_its_args(monkeypatch):
    """The args in the shipped file are ones the models accept (a bad key would fail deploy)."""
    import importlib

    from deployments._runtime import application

    built = {}
    monkeypatch.setattr(
        application,
        "build_application",
        lambda cls, **kwargs: built.setdefault(cls.__name__, kwargs),
    )
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    for app in config["applications"]:
        if app["name"] == "gateway":
            continue
        module, _, attr = app["import_path"].partition(":")
        builder = getattr(importlib.import_module(module), attr)
        builder(app.get("args", {}))
    assert built["Summarizer"]["init"] == {"max_sentences": 3}
    assert built["Iris"]["overrides"] == {"cache_ttl_s": 3600}
