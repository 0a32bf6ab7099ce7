"""The published OpenAPI document of the callback API is the one the code generates."""

from __future__ import annotations

import json
from pathlib import Path

from baton.openapi import callback_api_document

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "callback-api.openapi.json"


def test_published_document_matches_the_models() -> None:
    published = json.loads(DOCUMENT.read_text())
    assert published == callback_api_document(), (
        "run: baton openapi > docs/callback-api.openapi.json"
    )


def test_request_bodies_are_strict() -> None:
    schemas = callback_api_document()["components"]["schemas"]
    for name in ("CallbackBody", "HeartbeatBody"):
        assert schemas[name]["additionalProperties"] is False
    assert set(schemas["CallbackBody"]["required"]) == {"attempt", "status"}
    assert schemas["CallbackBody"]["properties"]["status"]["enum"] == ["succeeded", "failed"]
