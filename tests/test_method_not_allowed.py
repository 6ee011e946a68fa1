"""The 405 answer names every method the path takes, in its body and its Allow header, however
the installed FastAPI keeps routes (included routers flattened before 0.165, kept whole from
0.165, when Starlette's own answer had left `Allow` empty and the message "use ."). The
routes of the real API are covered by tests/test_error_body.py; here a small app has routes
of every kind at one path."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from hookcast.api.errors import install, method_not_allowed_message


def app_with_routes_of_every_kind() -> FastAPI:
    app = FastAPI()
    install(app)
    router = APIRouter(prefix="/api")

    @router.get("/thing")
    def get_thing() -> dict[str, str]:
        return {}

    @router.delete("/thing")
    def delete_thing() -> None:
        return None

    @app.put("/api/thing")  # on the app itself, beside the router's
    def put_thing() -> None:
        return None

    app.include_router(router)
    return app


def test_405_names_every_method_in_body_and_allow() -> None:
    with TestClient(app_with_routes_of_every_kind()) as client:
        response = client.post("/api/thing")
    assert response.status_code == 405
    assert response.headers["Allow"] == "DELETE, GET, PUT"
    assert response.json() == {
        "Error": True,
        "ErrorType": "MethodNotAllowed",
        "ErrorMessage": "POST is not allowed here; use DELETE, GET, PUT.",
        "ErrorSource": "hookcast",
    }


def test_no_method_found_never_says_use_nothing() -> None:
    assert method_not_allowed_message("POST", []) == "POST is not allowed here."
    assert method_not_allowed_message("POST", ["GET"]) == "POST is not allowed here; use GET."
