"""The pydantic shapes of the /v1/ endpoints in the OpenAPI 3.0 schema.

drf-spectacular's pydantic extension hands pydantic's JSON Schema (2020-12) through as it is;
OpenAPI 3.0 has no ``type: null`` and no ``const``, so ``--validate`` would refuse it. This
generator writes ``nullable: true`` and one-value ``enum`` instead.
"""

from __future__ import annotations

from drf_spectacular.contrib.pydantic import PydanticExtension
from drf_spectacular.plumbing import ResolvedComponent
from pydantic.json_schema import GenerateJsonSchema


class OpenApi30JsonSchema(GenerateJsonSchema):
    def nullable_schema(self, schema):
        inner = self.generate_inner(schema["schema"])
        if "$ref" in inner:
            return {"allOf": [inner], "nullable": True}
        return {**inner, "nullable": True}

    def none_schema(self, schema):
        return {"nullable": True, "description": "Always null."}

    def literal_schema(self, schema):
        result = super().literal_schema(schema)
        if "const" in result:
            result.setdefault("enum", [result["const"]])
            del result["const"]
        return result


class OpenAICompatShapes(PydanticExtension):
    target_class = "atelier_platform.openai_compat.schemas.OpenAIModel"
    match_subclasses = True
    priority = 1  # before drf-spectacular's generic pydantic extension

    def map_serializer(self, auto_schema, direction):
        schema = self.target.model_json_schema(
            ref_template="#/components/schemas/{model}", schema_generator=OpenApi30JsonSchema,
            mode="validation" if direction == "request" else "serialization",
        )
        for name, sub_schema in schema.pop("$defs", {}).items():
            auto_schema.registry.register_on_missing(
                ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=sub_schema)
            )
        return schema
