"""The Open Inference Protocol routes in-process (the handle path replaced by the consumer)."""

from __future__ import annotations

import json
import struct

from deployments.iris import Iris

SETOSA = {"sepal_length": 5.0, "sepal_width": 3.4, "petal_length": 1.5, "petal_width": 0.2}


def binary_request(values: dict[str, float], binary_output: bool) -> tuple[bytes, int]:
    document = {
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}
            for n in values
        ],
        "outputs": [{"name": "species", "parameters": {"binary_data": binary_output}}],
    }
    header = json.dumps(document).encode()
    return header + b"".join(struct.pack("<f", v) for v in values.values()), len(header)


async def test_binary_tensors_in_and_out(gateway, user, deploy):
    headers = await user()
    model = await deploy(Iris())
    name = model.consumer.spec.name
    body, header_length = binary_request(SETOSA, binary_output=True)
    response = await gateway.post(
        f"/v2/models/{name}/infer",
        content=body,
        headers={
            **headers,
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_length),
        },
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 4 + len("setosa")
    assert response.content[length + 4 :] == b"setosa"


async def test_json_tensors_metadata_and_errors(gateway, user, deploy):
    headers = await user()
    model = await deploy(Iris())
    name = model.consumer.spec.name
    document = {
        "id": "r1",
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP32", "data": [v]} for n, v in SETOSA.items()
        ],
    }
    response = await gateway.post(f"/v2/models/{name}/infer", json=document, headers=headers)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert response.json()["id"] == "r1" and outputs["species"]["data"] == ["setosa"]
    metadata = (await gateway.get(f"/v2/models/{name}", headers=headers)).json()
    assert metadata["versions"] == ["0"] and len(metadata["inputs"]) == 4
    assert (await gateway.get(f"/v2/models/{name}/ready", headers=headers)).status_code == 200
    bad = await gateway.post(
        f"/v2/models/{name}/infer",
        json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
        headers=headers,
    )
    assert bad.status_code == 400 and "no input named 'x'" in bad.json()["error"]
    assert set(bad.json()) == {"error"}  # the protocol's error shape
    for edge in ({"inputs": []}, {**document, "outputs": {}}):
        refused = await gateway.post(f"/v2/models/{name}/infer", json=edge, headers=headers)
        assert refused.status_code == 400 and set(refused.json()) == {"error"}, refused.text
    unauthorized = await gateway.get(f"/v2/models/{name}")
    assert unauthorized.status_code == 401 and set(unauthorized.json()) == {"error"}
    assert (await gateway.get("/v2/health/live")).json() == {"live": True}


async def test_readiness_is_about_the_model_not_its_tensors(gateway, user, deploy, registry):
    """A model whose request is not flat has no tensor mapping, but is ready all the same."""
    from deployments.summarizer import Summarizer

    headers = await user()
    name = (await deploy(Summarizer())).consumer.spec.name
    assert (await gateway.get(f"/v2/models/{name}", headers=headers)).status_code == 400
    ready = await gateway.get(f"/v2/models/{name}/ready", headers=headers)
    assert ready.status_code == 200 and ready.json() == {"name": name, "ready": True}
    missing = await gateway.get("/v2/models/no-such-model/ready", headers=headers)
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    for instance in await registry.instances(name):
        await registry.logout(name, instance.instance_id)
    gone = await gateway.get(f"/v2/models/{name}/ready", headers=headers)
    assert gone.status_code in (404, 503), gone.text
