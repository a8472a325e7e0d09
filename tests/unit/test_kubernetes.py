"""deploy/kubernetes stands up whole: it renders with kustomize, every manifest of a built-in
kind passes the Kubernetes schema (kubernetes-validate, strict), and the custom resources say
what the platform needs: the RayService runs serve_config.yaml's applications with the
autoscaler on and its secrets from the cluster, the PrometheusRule holds the shipped alerts.

The custom resources' own schemas (KubeRay's, the Prometheus operator's) are not vendored here:
their content is checked by what reads it (Serve's config schema, promtool).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "deploy/kubernetes"
KUBERNETES_VERSION = "1.32.0"
SECRET = "model-serving-secrets"


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("needs kubectl (scripts/services.sh installs it)")
    out = subprocess.run(
        ["kubectl", "kustomize", str(LAYOUT)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _one(docs: list[dict], kind: str) -> dict:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def test_built_in_kinds_pass_the_kubernetes_schema(rendered):
    import kubernetes_validate

    checked = 0
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked += 1
        except kubernetes_validate.SchemaNotFoundError:
            assert doc["kind"] in {"RayService", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert checked >= 14
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {
        "model-serving"
    }


def test_a_misspelt_field_is_caught():
    """The validation above is strict: an unknown field fails it (so it can fail at all)."""
    import kubernetes_validate

    service = yaml.safe_load((LAYOUT / "redis.yaml").read_text().split("---")[0])
    service["spec"]["selectr"] = service["spec"].pop("selector")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def test_the_rayservice_runs_serve_configs_applications_and_scales_its_nodes(rendered):
    from ray.serve.schema import ServeDeploySchema

    service = _one(rendered, "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert group["maxReplicas"] > group["minReplicas"] >= 1
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(embedded)
    shipped = yaml.safe_load((ROOT / "serve_config.yaml").read_text())

    def apps(config):
        return {
            a["name"]: (a["import_path"], a.get("args"), a.get("deployments"), a["route_prefix"])
            for a in config["applications"]
        }

    assert apps(embedded) == apps(shipped)
    assert embedded["http_options"]["host"] == "0.0.0.0"  # noqa: S104
    for app in embedded["applications"]:
        env = app["runtime_env"]["env_vars"]
        assert env["APP_ENVIRONMENT"] == "prod"
        # Addresses and credentials come from the pods' environment (the Secret), not here.
        assert not {"APP_REDIS_URL", "APP_AMQP_URL", "APP_JWT_SECRET"} & set(env)


def _ray_containers(service: dict) -> list[dict]:
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_credentials_come_from_the_secret_the_cluster_makes(rendered):
    job = _one(rendered, "Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    made = set(re.findall(r"--from-literal=(\w+)=", script))
    assert made == {"jwt_secret", "metrics_token", "redis_password", "rabbitmq_password"}
    referenced = {key for name, key in _secret_refs(rendered) if name == SECRET}
    assert (
        referenced <= made and {"jwt_secret", "redis_password", "rabbitmq_password"} <= referenced
    )
    for container in _ray_containers(_one(rendered, "RayService")):
        env = {e["name"]: e for e in container["env"]}
        for name in ("APP_JWT_SECRET", "APP_METRICS_TOKEN", "REDIS_PASSWORD", "RABBITMQ_PASSWORD"):
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == SECRET, name
        assert "$(REDIS_PASSWORD)@redis." in env["APP_REDIS_URL"]["value"]
        assert env["APP_AMQP_URL"]["value"].startswith("amqp://model-serving:$(RABBITMQ_PASSWORD)@")
        # Client addresses from X-Forwarded-For, trusted from the pod network only (a "*"
        # would take whatever a client wrote in the header).
        assert env["FORWARDED_ALLOW_IPS"]["value"] not in ("*", "")


def test_the_front_door_has_the_buffer_of_the_local_platform(rendered):
    """HAProxy's request buffer as `scripts/ingress.py` sets it on every other platform, room
    for the longest request line the API documents."""
    from scripts.ingress import HAPROXY_BUFSIZE

    for container in _ray_containers(_one(rendered, "RayService")):
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_SERVE_HAPROXY_TUNE_BUFSIZE"]["value"] == str(HAPROXY_BUFSIZE)


def _secret_refs(node) -> list[tuple[str, str]]:
    """Every {name, key} pair under a secretKeyRef or credentials entry."""
    found = []
    if isinstance(node, dict):
        for field, value in node.items():
            if field in ("secretKeyRef", "credentials") and isinstance(value, dict):
                found.append((value["name"], value["key"]))
            else:
                found += _secret_refs(value)
    elif isinstance(node, list):
        for item in node:
            found += _secret_refs(item)
    return found


def test_no_manifest_holds_a_password_or_the_guest_account(rendered):
    text = yaml.safe_dump_all(rendered)
    assert "guest" not in text
    assert not [d for d in rendered if d["kind"] == "Secret"]  # made in the cluster
    redis = _one([d for d in rendered if d["metadata"]["name"] == "redis"], "StatefulSet")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert redis["spec"]["volumeClaimTemplates"]


def test_only_the_platform_reaches_redis_and_rabbitmq(rendered):
    policies = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "NetworkPolicy"}
    assert policies["default-deny-ingress"]["spec"]["podSelector"] == {}
    for name, port in (("redis-from-ray", 6379), ("rabbitmq-from-ray", 5672)):
        [rule] = policies[name]["spec"]["ingress"]
        assert rule["from"] == [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "ray"}}}
        ]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    ingresses = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Ingress"}
    for ingress in ingresses.values():  # HTTPS, and gRPC over TLS
        assert ingress["spec"]["tls"] and ingress["spec"]["tls"][0]["secretName"]
    grpc = ingresses["model-serving-grpc"]
    assert grpc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    [rule] = grpc["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = next(
        d for d in rendered if d["kind"] == "Service" and d["metadata"]["name"] == backend["name"]
    )
    assert service["spec"]["ports"][0]["port"] == backend["port"]["number"] == 8001
    [gateway] = [
        a
        for a in yaml.safe_load(_one(rendered, "RayService")["spec"]["serveConfigV2"])[
            "applications"
        ]
        if a["name"] == "gateway"
    ]
    assert gateway["runtime_env"]["env_vars"]["APP_GRPC_PORT"] == "8001"
    ray_policy = policies["ray"]["spec"]["ingress"]
    assert {"protocol": "TCP", "port": 8001} in ray_policy[1]["ports"]


def test_the_prometheus_rule_holds_the_shipped_alerts(rendered, tmp_path):
    rule = _one(rendered, "PrometheusRule")
    shipped = yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())
    assert rule["spec"] == shipped
    if shutil.which("promtool") is None:
        pytest.skip("needs promtool")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    subprocess.run(["promtool", "check", "rules", str(path)], check=True, capture_output=True)
    monitor = _one(rendered, "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["authorization"]["credentials"] == {"name": SECRET, "key": "metrics_token"}
