"""`MessageValidator`: a JSON body checked against the published schema of its message.

The gateway runs this before `json_format` converts the body, so what `/openapi.json`
documents (`protos.json_schema`) is exactly what is accepted: `json_format` alone is more
lenient in places (it takes `true` for a number, "1.5" for a float, both spellings of a
field at once).
"""

from __future__ import annotations

import json
from typing import Any

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
        # The components reference each other as OpenAPI components; here they are $defs.
        defs = json.loads(json.dumps(schemas).replace(_COMPONENTS, "#/$defs/"))
        root = {"$defs": defs, "$ref": f"#/$defs/{component_name(descriptor)}"}
        self._validator = Draft202012Validator(root)

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` (the field's path and why), or None if it is valid."""
        error = best_match(self._validator.iter_errors(value))
        if error is None:
            return None
        path = ".".join(str(part) for part in error.absolute_path)
        text = f"{path}: {error.message}" if path else error.message
        return text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 1] + "…"
