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
    for name in ("summarizer", "iris", "echo"):
        assert apps[name].route_prefix is None
        assert apps[name].import_path == f"deployments.{name}:app"
        assert apps[name].runtime_env["env_vars"]["APP_REDIS_URL"]


def test_every_autoscaled_model_in_serve_config_keeps_the_backlog_policy():
    """Overriding autoscaling_config in YAML replaces it whole: the policy must be restated."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    amqp_url = config["x-env"]["env_vars"]["APP_AMQP_URL"]
    for app in config["applications"]:
        if app["name"] == "gateway":
            continue  # Serve's own policy on ongoing requests
        for deployment in app.get("deployments", []):
            autoscaling = deployment.get("autoscaling_config")
            if autoscaling is None:
                continue
            policy = autoscaling["policy"]
            assert policy["policy_function"].endswith(":QueueBacklogPolicy"), app["name"]
            assert policy["policy_kwargs"]["queue"] == deployment["name"]
            assert policy["policy_kwargs"]["amqp_url"] == amqp_url


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

    from deployments._runtime import replica

    built = {}
    monkeypatch.setattr(
        replica, "build_application", lambda cls, **kwargs: built.setdefault(cls.__name__, kwargs)
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
