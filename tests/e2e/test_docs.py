"""Swagger UI is served with its own assets and shows live models without a restart."""

from __future__ import annotations

from openapi_spec_validator import validate

from deployments.echo import Echo


def test_docs_page_uses_local_assets(http):
    page = http.get("/docs")
    assert page.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert http.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert http.get("/docs-assets/swagger-ui.css").status_code == 200


def test_openapi_valid_and_grows_with_a_new_model(http, deploy_model):
    before = http.get("/openapi.json").json()
    validate(before)
    name = deploy_model(Echo)
    after = http.get("/openapi.json").json()
    validate(after)
    assert f"/models/{name}/tasks" not in before["paths"]
    operation = after["paths"][f"/models/{name}/tasks"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["example"] == {
        "text": "",
        "delay_ms": 0,
        "fail_with": "",
    }
    assert "Returns the text it was sent" in operation["description"]
    assert "echo.EchoResponse" in after["components"]["schemas"]
