"""REST API: usage per portal, monthly statements and tariffs (staff with the model permissions).

- ``GET /api/portals/{id}/usage/?date_from=&date_to=&group_by=day|month`` and ``GET /api/usage/?portal=``:
  rows of period, provider, sender name, state, messages, parts, read from the daily rollups only.
- ``GET /api/portals/{id}/statement/?month=YYYY-MM&format=json|csv|xlsx`` and ``GET /api/statements/?month=``
  (every portal of the month): the statement as JSON or as a file for an accountant.
- ``/api/tariffs/``: prices per SMS part; the service refuses a negative price or an overlap (400 naming
  the field).

Thin: query serializers check the parameters (a 400 names the field, b24sms/api.py); the services
compute. Here ``format`` names the statement's file type, not one of DRF's renderers.
"""

from datetime import date

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from common.api import IdField, JsonAnswers, JsonTypesMixin, without_empty_values
from providers.models import USAGE_STATES, Installation, Tariff
from providers.services import statements as statement_services
from providers.services.tariffs import tariff_clean, tariff_save
from providers.services.usage import GROUP_BY_DAY, GROUP_BY_MONTH, usage_rows, usage_today

USAGE_MAX_DAYS = 732  # two years of days in one answer (a year of months is 12 rows per key)
MONTH_PATTERN = r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])$"  # YYYY-MM, year 1 to 9999
FORMATS = ("json", "csv", "xlsx")


# --- parameters ------------------------------------------------------------------------------------------
class UsageQuerySerializer(serializers.Serializer):
    date_from = serializers.DateField(
        required=False, help_text=_("First day (YYYY-MM-DD, included). Default: the first day of the current month.")
    )
    date_to = serializers.DateField(required=False, help_text=_("Last day (YYYY-MM-DD, included). Default: today."))
    group_by = serializers.ChoiceField(
        choices=[GROUP_BY_DAY, GROUP_BY_MONTH], default=GROUP_BY_DAY, help_text=_("One row per day or per month.")
    )

    def validate(self, data):
        today = usage_today()
        data.setdefault("date_to", today)
        data.setdefault("date_from", data["date_to"].replace(day=1))
        if data["date_to"] < data["date_from"]:
            raise serializers.ValidationError({"date_to": _("The last day is before the first day.")})
        if (data["date_to"] - data["date_from"]).days >= USAGE_MAX_DAYS:
            raise serializers.ValidationError(
                {"date_to": _("At most %(days)d days at once.") % {"days": USAGE_MAX_DAYS}}
            )
        return data


class AllPortalsUsageQuerySerializer(UsageQuerySerializer):
    portal = serializers.ListField(
        child=IdField(),
        required=False,
        help_text=_("Portal (installation) ids; repeat the parameter for several. Default: all."),
    )


class StatementQuerySerializer(serializers.Serializer):
    month = serializers.RegexField(
        MONTH_PATTERN, required=False, help_text=_("YYYY-MM, a month that has begun. Default: the current month.")
    )
    format = serializers.ChoiceField(
        choices=FORMATS, default="json", help_text=_("json, csv (UTF-8 with a BOM, for Excel) or xlsx.")
    )

    def validate_month(self, value):
        try:
            return statement_services.month_parse(value, today=usage_today())
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, data):
        data.setdefault("month", usage_today().replace(day=1))
        return data


# --- answers (for the schema) --------------------------------------------------------------------------------
class UsageRowSerializer(serializers.Serializer):
    period = serializers.CharField(help_text=_("YYYY-MM-DD (group_by=day) or YYYY-MM (group_by=month)."))
    portal = serializers.IntegerField()
    portal_domain = serializers.CharField()
    provider = serializers.IntegerField()
    provider_code = serializers.CharField()
    sender_name = serializers.CharField()
    state = serializers.ChoiceField(choices=USAGE_STATES, help_text=_("Where the messages received that day are now."))
    messages = serializers.IntegerField()
    parts = serializers.IntegerField(help_text=_("SMS parts of those messages."))


class UsageSerializer(serializers.Serializer):
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    group_by = serializers.CharField()
    time_zone = serializers.CharField(help_text=_("Days are days of receipt in this time zone (USAGE_TIME_ZONE)."))
    rows = UsageRowSerializer(many=True)


class StatementLineSerializer(serializers.Serializer):
    provider = serializers.IntegerField()
    provider_code = serializers.CharField()
    sender_name = serializers.CharField()
    tariff = serializers.IntegerField(allow_null=True)
    price_per_part = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
    first_day = serializers.DateField()
    last_day = serializers.DateField()
    messages = serializers.IntegerField()
    parts = serializers.IntegerField()
    billable_messages = serializers.IntegerField()
    billable_parts = serializers.IntegerField()
    amount = serializers.DecimalField(
        max_digits=16, decimal_places=2, allow_null=True, help_text=_("Null when no tariff applied on those days.")
    )


class StatementSerializer(serializers.Serializer):
    portal = serializers.IntegerField()
    portal_domain = serializers.CharField()
    month = serializers.CharField()
    currency = serializers.CharField()
    final = serializers.BooleanField(help_text=_("The month is over and none of its messages is still on its way."))
    pending_messages = serializers.IntegerField()
    lines = StatementLineSerializer(many=True)
    messages = serializers.IntegerField()
    parts = serializers.IntegerField()
    billable_messages = serializers.IntegerField()
    billable_parts = serializers.IntegerField()
    unpriced_parts = serializers.IntegerField(help_text=_("Billable parts of days without any tariff."))
    amount = serializers.DecimalField(max_digits=16, decimal_places=2)


class UsageApiView(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonAnswers


def _usage_answer(query: dict, rows: list[dict]) -> dict:
    return {
        "date_from": query["date_from"],
        "date_to": query["date_to"],
        "group_by": query["group_by"],
        "time_zone": settings.USAGE_TIME_ZONE,
        "rows": rows,
    }


class PortalUsageView(UsageApiView):
    required_permissions = ["providers.view_installation", "providers.view_usageday"]

    @extend_schema(
        summary=_("Usage of one portal per day or month"),
        parameters=[UsageQuerySerializer],
        responses={200: UsageSerializer},
    )
    def get(self, request, pk: int):
        installation = get_object_or_404(Installation, pk=pk)
        query = UsageQuerySerializer(data=without_empty_values(request.query_params))
        query.is_valid(raise_exception=True)
        data = query.validated_data
        rows = usage_rows(
            date_from=data["date_from"],
            date_to=data["date_to"],
            group_by=data["group_by"],
            installation_ids=[installation.pk],
        )
        return Response(_usage_answer(data, rows))


class UsageView(UsageApiView):
    required_permissions = ["providers.view_installation", "providers.view_usageday"]

    @extend_schema(
        summary=_("Usage of every portal (or those given) per day or month"),
        parameters=[AllPortalsUsageQuerySerializer],
        responses={200: UsageSerializer},
    )
    def get(self, request):
        query = AllPortalsUsageQuerySerializer(data=without_empty_values(request.query_params))
        query.is_valid(raise_exception=True)
        data = query.validated_data
        rows = usage_rows(
            date_from=data["date_from"],
            date_to=data["date_to"],
            group_by=data["group_by"],
            installation_ids=data.get("portal"),
        )
        return Response(_usage_answer(data, rows))


def statement_file_response(statements, *, month: date, file_format: str, domain: str | None = None) -> HttpResponse:
    """A CSV or XLSX download of ``statements`` (one portal's, or every portal's of the month)."""
    content, content_type = statement_services.statements_file(statements, month=month, file_format=file_format)
    response = HttpResponse(content, content_type=content_type)
    name = statement_services.statement_file_name(month, domain, file_format=file_format)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _file_responses(json_answer, description):
    """200 as JSON, or (format=csv or xlsx) the file: each with its own content type."""
    return {
        (200, "application/json"): OpenApiResponse(json_answer, description=description),
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description=description),
        (200, statement_services.FILE_CONTENT_TYPES["xlsx"]): OpenApiResponse(
            OpenApiTypes.BINARY, description=description
        ),
    }


class PortalStatementView(UsageApiView):
    required_permissions = ["providers.view_installation", "providers.view_usageday", "providers.view_tariff"]

    @extend_schema(
        summary=_("Monthly statement of one portal (JSON, CSV or XLSX)"),
        parameters=[StatementQuerySerializer],
        responses=_file_responses(StatementSerializer, _("JSON; with format=csv or xlsx, the file instead.")),
    )
    def get(self, request, pk: int):
        installation = get_object_or_404(Installation, pk=pk)
        query = StatementQuerySerializer(data=without_empty_values(request.query_params))
        query.is_valid(raise_exception=True)
        month, file_format = query.validated_data["month"], query.validated_data["format"]
        statement = statement_services.statement_build(installation=installation, month=month)
        if file_format == "json":
            return Response(statement_services.statement_as_dict(statement))
        return statement_file_response([statement], month=month, file_format=file_format, domain=installation.domain)


class StatementsView(UsageApiView):
    required_permissions = ["providers.view_installation", "providers.view_usageday", "providers.view_tariff"]

    @extend_schema(
        summary=_("Monthly statements of every portal that sent SMS that month"),
        parameters=[StatementQuerySerializer],
        responses=_file_responses(StatementSerializer(many=True), _("JSON; with format=csv or xlsx, one file.")),
    )
    def get(self, request):
        query = StatementQuerySerializer(data=without_empty_values(request.query_params))
        query.is_valid(raise_exception=True)
        month, file_format = query.validated_data["month"], query.validated_data["format"]
        statements = statement_services.statements_build(month=month)
        if file_format == "json":
            return Response([statement_services.statement_as_dict(s) for s in statements])
        return statement_file_response(statements, month=month, file_format=file_format)


# --- tariffs ---------------------------------------------------------------------------------------------------
class TariffSerializer(JsonTypesMixin, serializers.ModelSerializer):
    portal_domain = serializers.CharField(
        source="installation.domain", read_only=True, allow_null=True, help_text=_("Null for the default tariff.")
    )
    billable_states = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=_(
            "States whose messages are billed, among sending, sent, delivered, undelivered, failed. Default: "
            "sent, delivered, undelivered (every message i-dgtl accepted)."
        ),
    )
    price_per_part = serializers.DecimalField(max_digits=12, decimal_places=4, help_text=_("RUB per SMS part."))

    class Meta:
        model = Tariff
        fields = [
            "id",
            "installation",
            "portal_domain",
            "price_per_part",
            "billable_states",
            "valid_from",
            "valid_until",
            "comment",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"installation": {"help_text": _("Portal id; null for the default tariff.")}}
        validators = []  # the service checks the period (overlaps), not the unique constraint alone

    def validate(self, attrs):
        candidate = Tariff(pk=self.instance.pk if self.instance else None)
        if self.instance is not None:
            for field in ("installation", "price_per_part", "billable_states", "valid_from", "valid_until", "comment"):
                setattr(candidate, field, getattr(self.instance, field))
        for field, value in attrs.items():
            setattr(candidate, field, value)
        tariff_clean(tariff=candidate)  # a Django ValidationError: DRF answers 400 naming the field
        return attrs

    def create(self, validated_data):
        return tariff_save(tariff=Tariff(**validated_data))

    def update(self, instance, validated_data):
        for field, value in validated_data.items():
            setattr(instance, field, value)
        return tariff_save(tariff=instance)


class TariffViewSet(viewsets.ModelViewSet):
    """Prices per SMS part: the default tariff (no portal) and portals' own, each valid from a day."""

    queryset = Tariff.objects.select_related("installation").order_by("installation_id", "-valid_from", "id")
    serializer_class = TariffSerializer
    filterset_fields = ["installation"]


router = SimpleRouter()
router.register("tariffs", TariffViewSet, basename="tariff")

urlpatterns = [
    path("portals/<int:pk>/usage/", PortalUsageView.as_view(), name="portal-usage"),
    path("portals/<int:pk>/statement/", PortalStatementView.as_view(), name="portal-statement"),
    path("usage/", UsageView.as_view(), name="usage"),
    path("statements/", StatementsView.as_view(), name="statements"),
    *router.urls,
]
