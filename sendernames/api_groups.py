"""REST API for one name filed with several operators: /api/sender-name-groups/ (staff with the permissions).

Thin: the serializers check shapes; ``services.groups`` checks every operator's rules (a 400 names the
field, and its messages name the operator that refuses), files one application per operator and
queues each for submission once. The group's matrix (operator × status) and its applications are
nested in every answer.
"""

from collections.abc import Mapping

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_filters import rest_framework as filters
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from audit.services import Action, action_record
from common.api import FilterSet, JsonTypesMixin
from idgtl.contract import Brand, ChannelType, CommonType
from idgtl.models import IdgtlAccount
from sendernames import selectors
from sendernames.api import VALIDATION_ERROR_SCHEMA, ApplicationSerializer, DocumentSizeLimitMixin, uploaded_documents
from sendernames.models import SenderNameGroup
from sendernames.services import group_add_brand, group_create
from sendernames.services.readability import unreadable_message


class MatrixRowSerializer(serializers.Serializer):
    """One operator of the group: its latest application (earlier ones are in ``applications``)."""

    brand = serializers.CharField()
    brand_label = serializers.CharField()
    application = serializers.IntegerField(source="application.pk")
    status = serializers.CharField(
        source="application.status", help_text=gettext_lazy("i-dgtl's status string; '' before submission")
    )
    status_label = serializers.CharField(source="application.status_label")
    status_manual = serializers.BooleanField(source="application.status_manual")
    status_readable = serializers.SerializerMethodField()
    status_note = serializers.SerializerMethodField()
    submission_state = serializers.CharField(source="application.submission_state")
    fee = serializers.DecimalField(source="application.fee", max_digits=12, decimal_places=2, allow_null=True)
    remote_id = serializers.IntegerField(source="application.remote_id", allow_null=True)
    date_from = serializers.DateTimeField(source="application.date_from")
    usable_from = serializers.SerializerMethodField(help_text=gettext_lazy("00:00 Moscow time of the start date"))
    last_change = serializers.DateTimeField(help_text=gettext_lazy("When its status last changed (or it was filed)"))

    def get_status_readable(self, row) -> bool:
        return not row.application.status_not_readable

    def get_status_note(self, row) -> str:
        return unreadable_message() if row.application.status_not_readable else ""

    def get_usable_from(self, row) -> str:
        return selectors.usable_from(row.application).isoformat()


class GroupSerializer(serializers.ModelSerializer):
    brands = serializers.SerializerMethodField(help_text=gettext_lazy("The operators of the group"))
    matrix = serializers.SerializerMethodField(help_text=gettext_lazy("Operator × status, one row per operator"))
    applications = serializers.SerializerMethodField(help_text=gettext_lazy("Every application of the group, in order"))
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = SenderNameGroup
        fields = [
            "id",
            "account",
            "channel_type",
            "common_type",
            "sender_name",
            "counteragent_name",
            "counteragent_inn",
            "date_from",
            "brands",
            "matrix",
            "applications",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def _applications(self, group):
        if not hasattr(group, "_applications_cache"):
            group._applications_cache = list(
                selectors.with_status_readability(group.applications.all())
                .prefetch_related("documents", "history__changed_by")
                .order_by("pk")
            )
        return group._applications_cache

    def get_brands(self, group) -> list[str]:
        return [row.brand for row in selectors.group_matrix(group, self._applications(group))]

    @extend_schema_field(MatrixRowSerializer(many=True))
    def get_matrix(self, group):
        return MatrixRowSerializer(selectors.group_matrix(group, self._applications(group)), many=True).data

    @extend_schema_field(ApplicationSerializer(many=True))
    def get_applications(self, group):
        return ApplicationSerializer(self._applications(group), many=True, context=self.context).data


class GroupCreateSerializer(JsonTypesMixin, serializers.Serializer):
    account = serializers.PrimaryKeyRelatedField(
        queryset=IdgtlAccount.objects.all(),
        required=False,
        allow_null=True,
        help_text=gettext_lazy("i-dgtl account id; the default account when omitted"),
    )
    brands = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=gettext_lazy(
            "Operators to file with (MTS, MEGAFON, BEELINE, TELE2, MOTIV, YOTA, OTHER); in a multipart form repeat the "
            "part or separate them with commas. At least one, unless all_brands"
        ),
    )
    all_brands = serializers.BooleanField(
        required=False, default=False, help_text=gettext_lazy("File with every operator the contract knows")
    )
    channel_type = serializers.ChoiceField(choices=ChannelType.choices, default=ChannelType.SMS)
    common_type = serializers.ChoiceField(choices=CommonType.choices)
    date_from = serializers.CharField(
        help_text=gettext_lazy(
            "A date (2030-01-31) or an ISO time; stored as the start of that Moscow day, no earlier than tomorrow"
        )
    )
    sender_name = serializers.CharField(
        max_length=64,
        help_text=gettext_lazy(
            "3 to 11 characters, checked against every chosen operator's alphabet (MEGAFON and YOTA allow only Latin "
            "letters, digits and . * ! -)"
        ),
    )
    counteragent_name = serializers.CharField(max_length=255)
    counteragent_inn = serializers.CharField(max_length=32)


def _multipart_serializer():
    limit = settings.SENDER_NAME_MAX_DOCUMENTS
    help_text = gettext_lazy("A document (PDF, PNG or JPEG), sent with every operator's application; file1, file2, ...")
    fields = {f"file{n}": serializers.FileField(required=False, help_text=help_text) for n in range(1, limit + 1)}
    return type("GroupMultipartSerializer", (GroupCreateSerializer,), fields)


GroupMultipartSerializer = _multipart_serializer()
AddBrandSerializer = inline_serializer(
    "SenderNameGroupAddBrand",
    fields={"brand": serializers.CharField(help_text=gettext_lazy("The operator to file the group's name with"))},
)
AddBrandResult = inline_serializer(
    "SenderNameGroupAddBrandResult", fields={"detail": serializers.CharField(), "group": GroupSerializer()}
)
GROUP_EXAMPLE = OpenApiExample(
    "Two operators",
    request_only=True,
    value={
        "brands": ["MTS", "BEELINE"],
        "common_type": "SERVICE",
        "date_from": "2030-01-31",
        "sender_name": "MYSHOP",
        "counteragent_name": "ООО «Мой магазин»",
        "counteragent_inn": "7707083893",
    },
)
GROUP_ERROR_EXAMPLES = [
    OpenApiExample(
        "An operator refuses",
        status_codes=["400"],
        value={
            "sender_name": [
                "“ACME SHOP” is refused by MegaFon, Yota: characters not allowed: space "
                "(allowed: Latin letters, digits and . * ! -)."
            ]
        },
    ),
    OpenApiExample("No operator", status_codes=["400"], value={"brands": ["Choose at least one operator."]}),
]


class GroupFilter(FilterSet):
    sender_name = filters.CharFilter(field_name="sender_name", lookup_expr="iexact")

    class Meta:
        model = SenderNameGroup
        fields = ["sender_name", "account"]


@extend_schema_view(
    list=extend_schema(summary="List names filed with several operators"),
    retrieve=extend_schema(summary="One name with several operators: the matrix and the applications"),
)
class SenderNameGroupViewSet(
    DocumentSizeLimitMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """One name filed with several operators: one application per operator, and the matrix of their statuses."""

    parser_classes = [JSONParser, MultiPartParser]  # multipart for the documents of a new group
    serializer_class = GroupSerializer
    filterset_class = GroupFilter
    queryset = selectors.group_queryset().order_by("-created_at", "-pk")
    action_permissions = {  # filing sends to i-dgtl (which charges): the submit permission too
        "create": ["sendernames.add_sendernamegroup", "sendernames.submit_application"],
        "add_brand": ["sendernames.change_sendernamegroup", "sendernames.submit_application"],
    }

    @extend_schema(
        summary="File one name with several operators (one application each, each submitted once)",
        description=(
            "Checks the request against every chosen operator's rules first (a 400 names the field; its messages "
            "name the operator that refuses and why) and stores nothing then. Otherwise files one application per "
            "operator with the same fields and documents and queues each for submission to i-dgtl. 201 with the "
            "group; the same request again within minutes (a double submit) answers 200 with the group already "
            "filed and sends nothing. Multipart with documents as file1..fileN, or JSON without documents."
        ),
        request={"multipart/form-data": GroupMultipartSerializer, "application/json": GroupCreateSerializer},
        responses={
            201: GroupSerializer,
            200: GroupSerializer,
            400: OpenApiResponse(
                VALIDATION_ERROR_SCHEMA, description="Bad input, by field", examples=GROUP_ERROR_EXAMPLES
            ),
        },
        examples=[GROUP_EXAMPLE],
    )
    def create(self, request):
        serializer = GroupCreateSerializer(data=request.data)
        valid = serializer.is_valid()
        if not valid and not isinstance(request.data, Mapping):
            raise serializers.ValidationError(serializer.errors)
        documents, errors = uploaded_documents(request)
        if not valid or errors:
            raise serializers.ValidationError({**(serializer.errors if not valid else {}), **errors})
        data = dict(serializer.validated_data)
        brands = Brand.values if data.pop("all_brands") else data.pop("brands", [])
        data.pop("brands", None)
        data["account"] = data.get("account") or None
        filing = group_create(brands=brands, documents=documents, created_by=request.user, **data)
        if filing.created:  # each of its applications is queued for submission to i-dgtl
            for application in filing.group.applications.all():
                action_record(instance=application, action=Action.SUBMIT, result=filing.message, group=filing.group.pk)
        code = status.HTTP_201_CREATED if filing.created else status.HTTP_200_OK
        return Response(self._full(filing.group), status=code)

    @extend_schema(
        summary="File the group's name with one more operator (just that one)",
        request=AddBrandSerializer,
        description="201: filed and queued for submission; 200: the operator is already in the group (nothing "
        "filed). 400 names the field: an unknown operator, one whose rules refuse the name, a duplicate.",
        responses={
            201: AddBrandResult,
            200: AddBrandResult,
            400: OpenApiResponse(VALIDATION_ERROR_SCHEMA, description="Bad input, by field"),
        },
    )
    @action(detail=True, methods=["post"], url_path="add-brand", parser_classes=[JSONParser])
    def add_brand(self, request, pk=None):
        group = self.get_object()
        body = request.data if isinstance(request.data, Mapping) else {}
        brand = body.get("brand")
        if not isinstance(brand, str) or not brand.strip():
            raise serializers.ValidationError({"brand": [_("Choose an operator.")]})
        filing = group_add_brand(group_id=group.pk, brand=brand.strip(), created_by=request.user)
        action_record(
            instance=group,
            action=Action.ADD_OPERATOR,
            result=filing.message,
            brand=brand.strip(),
            filed=filing.filed,
            application=filing.application.pk,
        )
        code = status.HTTP_201_CREATED if filing.filed else status.HTTP_200_OK
        return Response({"detail": filing.message, "group": self._full(group)}, status=code)

    def _full(self, group):
        group = self.get_queryset().get(pk=group.pk)
        return GroupSerializer(group, context=self.get_serializer_context()).data
