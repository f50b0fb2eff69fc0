"""The OpenAPI document tells every status code an operation can answer, with its body, in one place.

``AutoSchema`` (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS) adds to each operation the errors it can answer
beside what its view declares, all with the API's one error body (``Error``, see ``b24sms.api``):

- 400 when it reads a body or query parameters: each bad field or parameter named with its messages;
- 401 (no or a bad token or session) and 403 (not staff, or without the permission), everywhere;
- 404 when its path names a row (an id that does not exist or is out of range) or it is paginated (a
  page past the last);
- 406 when it negotiates the answer's type (an ``Accept`` it cannot meet);
- 413 and 415 when it reads a body (too large; a Content-Type it does not parse).

``postprocess`` (a SPECTACULAR_SETTINGS hook) adds the ``Error`` component and marks every optional query
parameter ``allowEmptyValue``: an empty value is the same as leaving the parameter out (``common.api``);
an optional field of a multipart form likewise; a text query parameter holds no NUL (b24sms.middleware).
"""

from django.utils.translation import gettext_lazy as _
from drf_spectacular import openapi
from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation

from common.api import ERROR_REF, ID_MAX, ID_SCHEMA, IdFilter

ERROR_COMPONENTS = {
    "Error": {
        "type": "object",
        "description": (
            "The API's one error body. A 400 names each bad field or query parameter with its messages, e.g. "
            '{"sender_name": ["…"], "file2": ["…"]}; "non_field_errors" holds what concerns the request as a '
            "whole; the errors of one item of a list are an object keyed by its position "
            '({"brands": {"1": ["…"]}}). Every other error, and a body that cannot be parsed, is '
            '{"detail": "…"}.'
        ),
        "properties": {"detail": {"type": "string", "description": "What went wrong, for a person to read."}},
        "additionalProperties": {"$ref": "#/components/schemas/ErrorMessages"},
    },
    "ErrorMessages": {
        "description": "The messages about one field, or the errors of its items keyed by position.",
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/ErrorMessages"}},
        ],
    },
}
ERRORS = {
    "400": _("Bad input: each bad field or query parameter is named with its messages; nothing was changed."),
    "401": _("No credentials, or a token or session that is not valid."),
    "403": _("Not a staff user, or without the permission this needs."),
    "404": _("Not found: no such id (or one out of range); for a list, a page past the last."),
    "406": _("The Accept header names no type this operation answers with."),
    "413": _("The request body is larger than the server accepts."),
    "415": _("The request's Content-Type is not one this operation reads."),
}
BODY_METHODS = {"POST", "PUT", "PATCH"}
NO_NUL = "^[^\\x00]*$"


class AutoSchema(openapi.AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(dict(ERROR_REF), description=str(ERRORS[code])), code, direction=direction
                )
        return dict(sorted(responses.items()))

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.PrimaryKeyRelatedField)
            and schema.get("type") == "integer"
        ):  # an id given in a body: bounded like every id (common.api)
            schema.setdefault("minimum", 1)
            schema.setdefault("maximum", ID_MAX)
        return schema

    def _error_codes(self) -> list[str]:
        parameters = self._get_parameters()
        reads_body = self.method in BODY_METHODS and self.get_request_serializer() is not None
        codes = ["401", "403"]
        if reads_body or any(p["in"] == "query" for p in parameters):
            codes.append("400")
        if any(p["in"] == "path" for p in parameters) or any(p["name"] == "page" for p in parameters):
            codes.append("404")
        negotiator = self.view.get_content_negotiator()
        if type(negotiator).select_renderer is DefaultContentNegotiation.select_renderer:
            codes.append("406")
        if reads_body:
            codes += ["413", "415"]
        return codes


class FilterExtension(DjangoFilterExtension):
    """django-filter's parameters as drf-spectacular reads them, with an id filter's bounds."""

    target_class = "common.api.FilterBackend"
    priority = 1

    def resolve_filter_field(self, auto_schema, model, filterset_class, field_name, filter_field):
        parameters = super().resolve_filter_field(auto_schema, model, filterset_class, field_name, filter_field)
        if isinstance(filter_field, IdFilter):
            for parameter in parameters:
                parameter["schema"] = dict(ID_SCHEMA)
        return parameters


def postprocess(result, generator, request, public):
    """The error components; empty values allowed wherever a query parameter or a form field is optional."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.update(ERROR_COMPONENTS)
    forms = set()
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
                schema = parameter.get("schema", {})
                if (
                    parameter.get("in") == "query"
                    and schema.get("type") == "string"
                    and not ({"enum", "format", "pattern"} & set(schema))
                ):
                    schema["pattern"] = NO_NUL  # b24sms.middleware refuses a NUL in a query string
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
            if "$ref" in form:
                forms.add(form["$ref"].rsplit("/", 1)[-1])
    for name in forms:
        _form_fields_may_be_empty(components[name])
    return result


def _form_fields_may_be_empty(component):
    """A multipart form cannot say null and sends every field as text: an optional field left empty is the
    same as one left out (null where null is allowed), as DRF reads a form. Lists (repeated parts) and files
    are left as they are."""
    required = set(component.get("required", []))
    for name, field in component.get("properties", {}).items():
        if name in required or field.get("type") == "array" or field.get("format") == "binary":
            continue
        field.pop("nullable", None)
        description = field.pop("description", None)
        component["properties"][name] = {
            "anyOf": [field, {"type": "string", "maxLength": 0}],
            **({"description": description} if description else {}),
        }
