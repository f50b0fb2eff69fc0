"""What every REST API view shares about its input: ids, date-times, filters and pages, bounded once.

- An id (in a path, a query or a body) is a whole number from 1 to ``ID_MAX``, the largest that
  PostgreSQL's ``bigint`` and SQLite's ``INTEGER`` hold; anything else is a 400 naming the parameter or
  field (a path id that is not one is a 404), never a database error.
- A date-time filter takes ISO 8601 and refuses one that cannot be stored in UTC (year 1 west of it,
  year 9999 east of it) with a 400 naming it.
- An empty query value (``?created_from=``, ``?page=``) is the same as leaving the parameter out, as an
  HTML form sends it; the schema says so (``allowEmptyValue``).
- ``?page=`` is a whole number from 1; a page past the last is a 404.
"""

import datetime as dt
from collections.abc import Mapping

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.rest_framework import FilterSet as DrfFilterSet
from rest_framework import serializers
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination

ERROR_REF = {"$ref": "#/components/schemas/Error"}  # the API's one error body, for a view's extend_schema
ID_MAX = 2**63 - 1  # PostgreSQL bigint and SQLite INTEGER
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": ID_MAX}
PAGE_MAX = 2**31 - 1  # far past any last page; bounded so the page is never a huge number


def without_empty_values(query: QueryDict) -> QueryDict:
    """``query`` without the empty values: ``?state=&state=sent`` is ``?state=sent``, ``?page=`` is no page."""
    cleaned = QueryDict(mutable=True)
    for key, values in query.lists():
        kept = [value for value in values if value != ""]
        if kept:
            cleaned.setlist(key, kept)
    return cleaned


class IdField(serializers.IntegerField):
    """An id in a request body or query: 1 to ``ID_MAX``."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(**kwargs)


class RelatedIdsField(serializers.ManyRelatedField):
    """A list of ids of rows (``PrimaryKeyRelatedField(many=True)``) that refuses an object: DRF's own would
    take ``{}`` for an empty list (it iterates the keys)."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


def _json_type_failure(field, value) -> tuple[str, dict] | None:
    """The field's own error (key, params) when a JSON ``value`` is not of the field's type in the schema. DRF
    itself would take 0 for a text, "1" or 1.0 for a whole number, 0 or "yes" for true, 1 for a choice "1"."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else ("invalid", {})
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else ("invalid", {})
    if isinstance(field, serializers.FloatField):
        return None if number else ("invalid", {})
    if isinstance(field, serializers.DecimalField):  # written as text in the schema, e.g. "0.45"
        return None if isinstance(value, str) else ("decimal_as_text", {})
    if isinstance(field, serializers.PrimaryKeyRelatedField):
        fits = isinstance(value, int) and not isinstance(value, bool)
        return None if fits else ("incorrect_type", {"data_type": type(value).__name__})
    if isinstance(field, serializers.ChoiceField) and not isinstance(field, serializers.MultipleChoiceField):
        return None if isinstance(value, str) else ("invalid_choice", {"input": value})
    if isinstance(field, serializers.CharField):
        return None if isinstance(value, str) else ("invalid", {})
    return None  # dates (DRF takes only text), JSON, files: as the field reads them


def _json_type_errors(field, value):
    """The messages (for a list, the messages by position) when ``value`` is not of the field's JSON type."""
    if value is None:
        return None  # the field says whether null is allowed
    if isinstance(field, (serializers.ListField, serializers.ManyRelatedField)):
        child = field.child if isinstance(field, serializers.ListField) else field.child_relation
        if not isinstance(value, list):
            return None  # the field says it wants a list
        errors = {str(n): e for n, item in enumerate(value) if (e := _json_type_errors(child, item))}
        return errors or None
    failure = _json_type_failure(field, value)
    if failure is None:
        return None
    key, params = failure
    if key == "decimal_as_text":
        return [_('Write the number as text, e.g. "0.45".')]
    try:
        field.fail(key, **params)
    except ApiValidationError as exc:
        return exc.detail


class JsonTypesMixin:
    """For a serializer of a request body: in JSON, each value must be of its field's type in the schema
    (``"code": 0`` is a 400 naming ``code``, not the text "0"). Form bodies, all text, are read as DRF does."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping) and not isinstance(data, QueryDict):
            errors = {}
            for field in self._writable_fields:
                if field.field_name in data:
                    problem = _json_type_errors(field, data[field.field_name])
                    if problem:
                        errors[field.field_name] = problem
            if errors:
                raise ApiValidationError(errors)
        return super().to_internal_value(data)


class IdFilter(django_filters.NumberFilter):
    """A filter by id (``?portal=3``): 1 to ``ID_MAX``; an id that exists nowhere filters everything out."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(*args, **kwargs)


class UtcDateTimeField(IsoDateTimeField):
    def clean(self, value):
        value = super().clean(value)
        if value is not None:
            try:
                value.astimezone(dt.UTC)
            except OverflowError:
                raise ValidationError(_("This date and time is out of range."), code="invalid") from None
        return value


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time filter whose value is storable in UTC."""

    field_class = UtcDateTimeField


class FilterSet(DrfFilterSet):
    """Every API filterset: foreign keys and ids filter by a bounded id (not a 400 for an id that does not
    exist, as Django's model choice filter answers), date-times as ``DateTimeFilter``."""

    FILTER_DEFAULTS = {
        **DrfFilterSet.FILTER_DEFAULTS,
        models.ForeignKey: {"filter_class": IdFilter},
        models.OneToOneField: {"filter_class": IdFilter},
        models.AutoField: {"filter_class": IdFilter},
        models.BigAutoField: {"filter_class": IdFilter},
        models.DateTimeField: {"filter_class": DateTimeFilter},
    }


class FilterBackend(DjangoFilterBackend):
    """django-filter with the API's filterset base, and empty query values left out."""

    filterset_base = FilterSet

    def get_filterset_kwargs(self, request, queryset, view):
        kwargs = super().get_filterset_kwargs(request, queryset, view)
        kwargs["data"] = without_empty_values(kwargs["data"])
        return kwargs


class Pagination(PageNumberPagination):
    """DRF's page numbers, with ``page`` checked: not a whole number from 1 is a 400 naming it; a page past
    the last is a 404 (DRF's "Invalid page.")."""

    def get_page_number(self, request, paginator):
        value = request.query_params.get(self.page_query_param, "")
        if value == "":
            return 1
        field = serializers.IntegerField(min_value=1, max_value=PAGE_MAX)
        try:
            return field.run_validation(value)
        except ApiValidationError as exc:
            raise ApiValidationError({self.page_query_param: exc.detail}) from None

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": PAGE_MAX}
        return parameters


class JsonAnswers(DefaultContentNegotiation):
    """For views that answer with a file (or JSON, which errors always are): the first renderer, whatever
    the Accept header says, so a client asking for the file's type is never refused with a 406; and
    ``?format=`` is left to the view (a statement's file type), not taken as DRF's renderer override."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
