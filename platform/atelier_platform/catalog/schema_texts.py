"""The texts a person wrote in a plugin's input, found by the JSON Schema it was validated with: what the
dashboard's lists show to recognise a request, and what the content library exports as an output's prompt."""

from __future__ import annotations

import uuid


def resolve_ref(schema: dict, root: dict) -> dict:
    """``schema`` itself, or the definition of ``root`` its ``$ref`` names (``#/$defs/Name``)."""
    ref = schema.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return root.get("$defs", {}).get(ref.split("/")[-1], {})
    return schema


def written_texts(data, root: dict) -> list[str]:
    """The strings of ``data`` that a person wrote, by the JSON schema ``root`` it was validated with: not a
    fixed choice (``enum``, ``const``: a chat message's role) nor an id (a UUID); every non-blank string
    when ``root`` is empty (a plugin no longer installed)."""
    texts: list[str] = []

    def walk(value, node) -> None:
        node = resolve_ref(node if isinstance(node, dict) else {}, root)
        branches = [resolve_ref(branch, root) for branch in node.get("anyOf", node.get("oneOf", []))]
        if isinstance(value, str):
            fixed = [choice for n in [node, *branches] for choice in n.get("enum", [n["const"]] if "const" in n else [])]
            if value.strip() and value not in fixed and not is_uuid(value):
                texts.append(value)
        elif isinstance(value, dict):
            properties = next((n["properties"] for n in [node, *branches] if "properties" in n), {})
            for key, inner in value.items():
                walk(inner, properties.get(key, {}))
        elif isinstance(value, list):
            items = next((n["items"] for n in [node, *branches] if "items" in n), {})
            for inner in value:
                walk(inner, items)

    walk(data, root)
    return texts


def is_uuid(text: str) -> bool:
    if len(text) not in (32, 36):
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
