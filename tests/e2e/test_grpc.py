"""The Open Inference Protocol over gRPC on a real Ray Serve, with `tritonclient.grpc` (Triton's
own client, unchanged): the checks the REST test makes with `tritonclient.http`, the REST
errors' status codes, a model deployed after the server started, and gRPC over TLS with a
throwaway certificate authority (a plain client gets nothing from the TLS port).

This process never imports the platform's own `inference` messages: they would clash with
tritonclient's in protobuf's pool."""

from __future__ import annotations

import numpy as np
import pytest
import trustme

from deployments.echo import Echo
from deployments.embedder import Embedder
from deployments.iris import Iris
from deployments.summarizer import Summarizer
from tests.e2e.test_infer import SETOSA
from tests.utils.e2e import wait_for
from tests.utils.net import free_port


def _metadata(headers: dict[str, str]) -> dict[str, str]:
    return {"authorization": headers["Authorization"]}


def _iris_inputs(triton):
    inputs = []
    for name, value in SETOSA.items():
        tensor = triton.InferInput(name, [1], "FP32")
        tensor.set_data_from_numpy(np.array([value], dtype=np.float32))
        inputs.append(tensor)
    return inputs


def test_tritonclient_grpc_round_trip_on_iris_and_the_embedder(grpc_address, auth, deploy_model):
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    headers = _metadata(auth())
    iris = deploy_model(Iris)
    summarizer = deploy_model(Summarizer)
    client = triton.InferenceServerClient(grpc_address)
    assert client.is_server_live(headers=headers)
    assert client.is_server_ready(headers=headers)
    assert client.is_model_ready(iris, headers=headers)
    metadata = client.get_model_metadata(iris, headers=headers, as_json=True)
    assert [i["name"] for i in metadata["inputs"]] == list(SETOSA)
    assert {i["datatype"] for i in metadata["inputs"]} == {"FP32"}
    assert metadata["versions"] == ["0"]
    outputs = [triton.InferRequestedOutput("species")]
    result = client.infer(iris, _iris_inputs(triton), outputs=outputs, headers=headers)
    assert [s.decode() for s in result.as_numpy("species")] == ["setosa"]
    everything = client.infer(iris, _iris_inputs(triton), headers=headers)
    assert everything.as_numpy("probabilities") is not None  # a map: one JSON BYTES element
    # The neural example: a text in, its 384-value embedding out.
    embedder = deploy_model(Embedder)
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"Replicas drain the queue."], dtype=np.object_))
    embedded = client.infer(embedder, [text], headers=headers)
    assert embedded.as_numpy("vector").shape == (384,)
    assert embedded.as_numpy("dimension").tolist() == [384]
    with pytest.raises(InferenceServerException, match="not flat") as not_flat:
        client.get_model_metadata(summarizer, headers=headers)
    assert not_flat.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as anonymous:
        client.get_model_metadata(iris)  # no bearer token
    assert anonymous.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as missing:
        client.infer("no-such-model", _iris_inputs(triton), headers=headers)
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    client.close()


def test_a_model_deployed_later_and_its_errors(grpc_address, auth, deploy_model):
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    headers = _metadata(auth())
    client = triton.InferenceServerClient(grpc_address)
    assert client.is_server_live(headers=headers)  # the server runs before the model exists
    echo = deploy_model(Echo)

    def echo_input(text: str, fail_with: str = ""):
        tensors = [triton.InferInput("text", [1], "BYTES")]
        tensors[0].set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
        if fail_with:
            failing = triton.InferInput("fail_with", [1], "BYTES")
            failing.set_data_from_numpy(np.array([fail_with.encode()], dtype=np.object_))
            tensors.append(failing)
        return tensors

    answer = wait_for(lambda: client.infer(echo, echo_input("late"), headers=headers), timeout=30)
    assert answer.as_numpy("text").tolist() == [b"late"]
    with pytest.raises(InferenceServerException, match="it broke") as broken:
        client.infer(echo, echo_input("x", fail_with="it broke"), headers=headers)
    assert broken.value.status() == "StatusCode.INTERNAL"  # REST: 502
    client.close()


def test_grpc_over_tls_with_the_cas_certificate_and_nothing_without_it(
    gateway_url, auth, deploy_model, tmp_path
):
    """A gateway started with APP_GRPC_TLS_CERT_FILE and APP_GRPC_TLS_KEY_FILE serves gRPC over
    TLS only."""
    import tritonclient.grpc as triton
    from ray import serve
    from tritonclient.utils import InferenceServerException

    from app.main import build_gateway

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    env = {
        "APP_GRPC_PORT": str(port),
        "APP_GRPC_TLS_CERT_FILE": str(cert),
        "APP_GRPC_TLS_KEY_FILE": str(key),
    }
    serve.run(
        build_gateway(
            name="gateway-tls",
            num_replicas=1,
            ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": env}},
        ),
        name="gateway-tls",
        route_prefix="/gateway-tls",
    )
    try:
        headers = _metadata(auth())
        iris = deploy_model(Iris)
        secure = triton.InferenceServerClient(
            f"127.0.0.1:{port}", ssl=True, root_certificates=str(ca_file)
        )
        assert secure.is_server_live(headers=headers)
        result = secure.infer(iris, _iris_inputs(triton), headers=headers)
        assert [s.decode() for s in result.as_numpy("species")] == ["setosa"]
        secure.close()
        # Without trusting the authority, the handshake fails.
        untrusted = triton.InferenceServerClient(f"127.0.0.1:{port}", ssl=True)
        with pytest.raises(InferenceServerException):
            untrusted.is_server_live(headers=headers)
        # A plain (insecure) client gets no answer from the TLS port.
        plain = triton.InferenceServerClient(f"127.0.0.1:{port}")
        with pytest.raises(InferenceServerException):
            plain.is_server_live(headers=headers, client_timeout=5)
    finally:
        serve.delete("gateway-tls")
