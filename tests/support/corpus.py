"""The fuzz corpora in tests/fuzz/corpus: one JSON object per line, with markers that
expand into long runs, and what a refusal's reason must name."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"


def load_corpus(name: str) -> list[dict[str, Any]]:
    """One JSON object per line; ``repeat`` entries expand markers into long runs
    (a 300 KiB body is stored as a marker, not as 300 KiB of 'x')."""
    entries = []
    for line in (CORPUS / name).read_text().splitlines():
        if line.strip():
            entries.append(_expand(json.loads(line)))
    return entries


def _expand(entry: dict[str, Any]) -> dict[str, Any]:
    repeats = entry.get("repeat") or []

    def expand(value: Any) -> Any:
        if isinstance(value, str):
            for repeat in repeats:
                value = value.replace(repeat["marker"], repeat["text"] * repeat["times"])
            return value
        if isinstance(value, dict):
            return {key: expand(item) for key, item in value.items()}
        if isinstance(value, list):
            return [expand(item) for item in value]
        return value

    return {key: (value if key == "repeat" else expand(value)) for key, value in entry.items()}


def raw_body(entry: dict[str, Any]) -> bytes:
    """The bytes of an SQS corpus body."""
    if "body_base64" in entry:
        return base64.b64decode(entry["body_base64"])
    return str(entry["body"]).encode("utf-8", "surrogatepass")


def names_field(reason: str, field: str) -> bool:
    """The reason has a 'field: ...' or 'field.sub: ...' problem (as the unit tests say)."""
    return re.search(rf"(^|; ){re.escape(field)}(\.[^:]*)?: ", reason) is not None
