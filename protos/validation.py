"""`MessageValidator`: a JSON body checked against the published schema of its message.

The gateway runs this before `json_format` converts the body, so what `/openapi.json`
documents (`protos.json_schema`) is exactly what is accepted: `json_format` alone is more
lenient in places (it takes `true` for a number, "1.5" for a float, both spellings of a
field at once).

Every body is checked by the schema compiled to Python code (`fastjsonschema`, a few
microseconds: `jsonschema` took 25-35, a share of the submit path a profile showed); only a
body it refuses is checked again by `jsonschema`, whose best match names the field and the
reason in the answer. Formats and content encodings are annotations here, as `jsonschema`
treats them by default.
"""

from __future__ import annotations

import json
from typing import Any

import fastjsonschema
from google.protobuf.descriptor import Descriptor
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from protos.json_schema import component_name, message_schemas

MAX_PROBLEM_CHARS = 300
_COMPONENTS = "#/components/schemas/"


class MessageValidator:
    """Validates JSON values against the schema of one message type."""

    def __init__(self, descriptor: Descriptor) -> None:
        schemas = message_schemas(descriptor)
        text = json.dumps(schemas)
        # The components reference each other as OpenAPI components; here they are $defs.
        defs = json.loads(text.replace(_COMPONENTS, "#/$defs/"))
        root = {"$defs": defs, "$ref": f"#/$defs/{component_name(descriptor)}"}
        self._validator = Draft202012Validator(root)
        # The same schema in draft 7's spelling, compiled.
        definitions = json.loads(text.replace(_COMPONENTS, "#/definitions/"))
        self._fast = fastjsonschema.compile(
            _without_formats(
                {"definitions": definitions, "$ref": f"#/definitions/{component_name(descriptor)}"}
            )
        )

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` (the field's path and why), or None if it is valid."""
        try:
            self._fast(value)
            return None
        except fastjsonschema.JsonSchemaValueException:
            pass
        error = best_match(self._validator.iter_errors(value))
        if error is None:
            return None
        path = ".".join(str(part) for part in error.absolute_path)
        text = f"{path}: {error.message}" if path else error.message
        return text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 1] + "…"


# Keywords whose value maps names (of properties, of definitions) to schemas.
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs")
# Annotations to `jsonschema` (the reference), assertions to fastjsonschema: left out.
_ANNOTATIONS = ("format", "contentEncoding", "contentMediaType")


def _without_formats(schema: Any) -> Any:
    """The schema without its annotation keywords (`format`, `contentEncoding`...); a
    property of that name stays."""
    if isinstance(schema, list):
        return [_without_formats(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kept: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            kept[key] = {name: _without_formats(sub) for name, sub in value.items()}
        else:
            kept[key] = _without_formats(value)
    return kept
