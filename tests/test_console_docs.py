"""/docs and /redoc work offline: they reference only assets this server serves, and the
OpenAPI document declares the bearer scheme that Swagger UI's Authorize uses."""

from __future__ import annotations

import re

from api_support import running_api


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html) + re.findall(
        r"""url: ?['"]([^'"]+)['"]""", html
    )


def test_docs_and_redoc_use_only_local_assets(tmp_path) -> None:
    with running_api(tmp_path) as api:
        for page in ("/docs", "/redoc"):
            response = api.client.get(page)
            assert response.status_code == 200
            urls = _asset_urls(response.text)
            assert urls, page
            for url in urls:
                assert url.startswith("/"), (page, url)  # no CDN, no other host
                asset = api.client.get(url)
                assert asset.status_code == 200, url
                assert len(asset.content) > 100, url
            assert "cdn" not in response.text.lower()
            assert "fonts.googleapis" not in response.text


def test_openapi_declares_the_bearer_scheme_on_api_routes(tmp_path) -> None:
    with running_api(tmp_path) as api:
        doc = api.client.get("/openapi.json").json()
        assert doc["components"]["securitySchemes"]["ApiKey"] == {
            "type": "http",
            "scheme": "bearer",
            "description": doc["components"]["securitySchemes"]["ApiKey"]["description"],
        }
        operations = [
            (path, op)
            for path, ops in doc["paths"].items()
            for op in ops.values()
            if path.startswith("/api/")
        ]
        assert operations and all(op["security"] == [{"ApiKey": []}] for _, op in operations)
        assert "/api/v1/Deliveries" in doc["paths"]
        assert "/api/v1/Deliveries/Redeliver" in doc["paths"]
        # "Try it out" with the key: the same request Swagger UI sends.
        answer = api.client.get("/api/v1/Deliveries", headers=api.auth())
        assert answer.status_code == 200
