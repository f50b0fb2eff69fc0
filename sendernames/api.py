"""REST API for sender-name applications (staff with the model permissions; token or session authentication).

Thin: serializers check the shape and each field with the rules of ``validation``; the services
create, submit and refresh. Errors are JSON naming the field, never a 500.
"""

import re
from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadhandler import FileUploadHandler
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
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
from common.api import ERROR_REF, FilterSet, JsonAnswers, JsonTypesMixin
from idgtl.contract import DOCUMENT_MIME_TYPES, Brand, ChannelType, CommonType
from idgtl.models import IdgtlAccount
from sendernames import selectors, validation
from sendernames.models import SenderNameApplication, SenderNameDocument, SenderNameStatusChange, SubmissionState
from sendernames.services import (
    application_create,
    application_refresh_status,
    application_set_status,
    application_submit,
)
from sendernames.services.readability import unreadable_message

FILE_PART = re.compile(r"^file([1-9]\d*)$")


class DocumentSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = SenderNameDocument
        fields = ["id", "original_name", "size", "content_type", "position", "download_url", "created_at"]

    def get_download_url(self, document) -> str:
        request = self.context.get("request")
        path = reverse("sender-names-document", args=[document.application_id, document.pk])
        return request.build_absolute_uri(path) if request else path


class StatusChangeSerializer(serializers.ModelSerializer):
    manual = serializers.SerializerMethodField(help_text=gettext_lazy("Set by hand by an operator"))
    changed_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text=gettext_lazy("Who set it by hand (null for a status from i-dgtl)"),
    )

    class Meta:
        model = SenderNameStatusChange
        fields = ["previous_status", "status", "comment", "cause", "manual", "status_date", "changed_by", "created_at"]

    def get_manual(self, change) -> bool:
        return change.cause == "manual"


class LastErrorSerializer(serializers.Serializer):
    kind = serializers.CharField(source="last_error_kind")
    code = serializers.IntegerField(source="last_error_code", allow_null=True)
    message = serializers.CharField(source="last_error_message")


class ApplicationSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text=gettext_lazy("i-dgtl's status string as received"))
    status_label = serializers.CharField(read_only=True)
    status_manual = serializers.BooleanField(
        read_only=True,
        help_text=gettext_lazy("The status was set by hand (from i-dgtl's cabinet), not read from i-dgtl"),
    )
    status_readable = serializers.SerializerMethodField(
        help_text=gettext_lazy(
            "False: i-dgtl has no read endpoint for this account, so the status is not polled; set it by hand"
        )
    )
    status_note = serializers.SerializerMethodField(help_text=gettext_lazy("Why the status is not read, if it is not"))
    usable_from = serializers.SerializerMethodField(
        help_text=gettext_lazy("Usable for sending (once approved) from this time: 00:00 Moscow time of the start date")
    )
    last_error = serializers.SerializerMethodField()
    documents = DocumentSerializer(many=True, read_only=True)
    history = StatusChangeSerializer(many=True, read_only=True)

    class Meta:
        model = SenderNameApplication
        fields = [
            "id",
            "account",
            "channel_type",
            "common_type",
            "brand",
            "date_from",
            "sender_name",
            "counteragent_name",
            "counteragent_inn",
            "submission_state",
            "remote_id",
            "status",
            "status_label",
            "status_comment",
            "fee",
            "status_manual",
            "status_date",
            "status_changed_at",
            "status_readable",
            "status_note",
            "usable_from",
            "group",
            "last_error",
            "submitted_at",
            "status_checked_at",
            "next_status_check_at",
            "created_at",
            "updated_at",
            "documents",
            "history",
        ]
        read_only_fields = fields

    def get_status_readable(self, application) -> bool:
        return not application.status_not_readable

    def get_status_note(self, application) -> str:
        return unreadable_message() if application.status_not_readable else ""

    def get_usable_from(self, application) -> str:
        return selectors.usable_from(application).isoformat()

    @extend_schema_field(LastErrorSerializer(allow_null=True))
    def get_last_error(self, application) -> dict | None:
        if not application.last_error_kind:
            return None
        return LastErrorSerializer(application).data


def _drf_error(exc: DjangoValidationError):
    return serializers.ValidationError([str(m) for m in exc.messages])


class ApplicationCreateSerializer(JsonTypesMixin, serializers.Serializer):
    account = serializers.PrimaryKeyRelatedField(
        queryset=IdgtlAccount.objects.all(),
        required=False,
        allow_null=True,
        help_text=gettext_lazy("i-dgtl account id; the default account when omitted"),
    )
    channel_type = serializers.ChoiceField(choices=ChannelType.choices, default=ChannelType.SMS)
    common_type = serializers.ChoiceField(choices=CommonType.choices)
    brand = serializers.ChoiceField(choices=Brand.choices)
    date_from = serializers.CharField(
        help_text=gettext_lazy(
            "A date (2030-01-31) or an ISO time; stored as the start of that Moscow day, no earlier than tomorrow"
        )
    )
    sender_name = serializers.CharField(
        max_length=64,
        trim_whitespace=True,
        help_text=gettext_lazy(
            "3 to 11 characters: Latin letters, digits and . * ! - for MEGAFON and YOTA; Latin letters, digits, "
            "spaces and . * + - for the others"
        ),
    )
    counteragent_name = serializers.CharField(max_length=255, help_text=gettext_lazy("The legal entity's name"))
    counteragent_inn = serializers.CharField(
        max_length=32,
        help_text=gettext_lazy(
            "The legal entity's INN: 10 digits, or 12 for an individual entrepreneur, with valid check digits"
        ),
    )

    def validate_date_from(self, value):
        try:
            return validation.normalise_date_from(value)
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc

    def validate_counteragent_inn(self, value):
        try:
            return validation.validate_inn(value)
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc

    def validate(self, attrs):
        try:
            validation.validate_sender_name(attrs["sender_name"], attrs["brand"])
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"sender_name": [str(m) for m in exc.messages]}) from exc
        return attrs


def _multipart_serializer():
    """For the schema: the same fields as form parts, plus the documents as file1..fileN."""
    limit = settings.SENDER_NAME_MAX_DOCUMENTS
    help_text = gettext_lazy(
        "A document: PDF, PNG or JPEG judged by its content, at most %(size)s bytes. Send file1, file2, ... in "
        "order, at most %(count)s files; at least one for a PROMO name."
    ) % {"size": settings.SENDER_NAME_MAX_DOCUMENT_SIZE, "count": limit}
    fields = {f"file{n}": serializers.FileField(required=False, help_text=help_text) for n in range(1, limit + 1)}
    return type("ApplicationMultipartSerializer", (ApplicationCreateSerializer,), fields)


ApplicationMultipartSerializer = _multipart_serializer()
VALIDATION_ERROR_SCHEMA = {  # the API's one error body (common.api), with the keys a 400 here names
    "allOf": [ERROR_REF],
    "description": "One key per bad field (channel_type, common_type, brand, date_from, sender_name, "
    "counteragent_name, counteragent_inn, account, documents, file1..fileN; non_field_errors for a body that is not an "
    "object), each with its messages.",
}
APPLICATION_EXAMPLE = OpenApiExample(
    "Service name for MegaFon",
    request_only=True,
    value={
        "common_type": "SERVICE",
        "brand": "MEGAFON",
        "date_from": "2030-01-31",
        "sender_name": "MYSHOP",
        "counteragent_name": "ООО «Мой магазин»",
        "counteragent_inn": "7707083893",
    },
)
ERROR_EXAMPLES = [
    OpenApiExample(
        "Bad fields",
        status_codes=["400"],
        value={
            "sender_name": ["For MegaFon a sender name may contain only Latin letters, digits and . * ! -"],
            "file2": ["contract.pdf is not a PDF, PNG or JPEG file (judged by its content, not its name)."],
        },
    ),
    OpenApiExample(
        "Duplicate",
        status_codes=["400"],
        value={
            "sender_name": [
                "“MyShop” for MTS is already filed in application #12 (Pre-review); file a new one only "
                "after that one is rejected or canceled."
            ]
        },
    ),
]


def uploaded_documents(request) -> tuple[list, dict]:
    """The files of parts file1..fileN in order, and the errors keyed by part (any other file part,
    a file1..fileN sent as a plain value, a bad file, too many files)."""
    numbered, errors = [], {}
    for part in request.FILES:
        match = FILE_PART.match(part)
        if not match:
            errors[part] = [_("Unexpected file part; documents are sent as file1, file2, ...")]
            continue
        for upload in request.FILES.getlist(part):
            numbered.append((int(match.group(1)), part, upload))
    if isinstance(request.data, Mapping):
        for key in request.data:
            if isinstance(key, str) and FILE_PART.match(key) and key not in request.FILES:
                errors[key] = [_("Send documents as files in a multipart/form-data request, not as values.")]
    numbered.sort(key=lambda item: item[0])
    try:
        validation.validate_document_count(len(numbered))
    except DjangoValidationError as exc:
        errors["documents"] = exc.messages
    for _n, part, upload in numbered:
        try:
            validation.detect_document_type(upload)
        except DjangoValidationError as exc:
            errors.setdefault(part, []).extend(exc.messages)
    return [upload for _n, _part, upload in numbered], errors


class DocumentSizeLimit(FileUploadHandler):
    """Stops reading an upload as soon as one file part passes the document size limit, with a 400
    naming the part, instead of first writing the whole (maybe huge) file to disk."""

    def new_file(self, field_name, file_name, *args, **kwargs):
        super().new_file(field_name, file_name, *args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        limit = settings.SENDER_NAME_MAX_DOCUMENT_SIZE
        if self.received > limit:
            raise serializers.ValidationError(
                {
                    self.field_name: [
                        _("%(name)s is more than %(limit)s bytes; a document may be at most %(limit)s bytes.")
                        % {"name": self.file_name, "limit": limit}
                    ]
                }
            )
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler stores the file


class DocumentSizeLimitMixin:
    """A viewset whose POSTs carry documents: each file part is cut off at the document size limit."""

    def initialize_request(self, request, *args, **kwargs):
        if request.method == "POST":  # before anything (the CSRF check of a session) reads the body
            request.upload_handlers.insert(0, DocumentSizeLimit(request))
        return super().initialize_request(request, *args, **kwargs)


class ApplicationFilter(FilterSet):
    status = filters.CharFilter(field_name="status")
    brand = filters.ChoiceFilter(choices=Brand.choices)
    common_type = filters.ChoiceFilter(choices=CommonType.choices)
    submission_state = filters.ChoiceFilter(choices=SubmissionState.choices)

    class Meta:
        model = SenderNameApplication
        fields = ["status", "brand", "common_type", "submission_state"]


class ManualStatusSerializer(JsonTypesMixin, serializers.Serializer):
    status = serializers.CharField(help_text=gettext_lazy("One of PRE_REVIEW, REVIEW, APPROVED, REJECTED, CANCELED"))
    date = serializers.CharField(
        help_text=gettext_lazy(
            "The date i-dgtl's cabinet shows for the status (2030-01-31); not in the future (Moscow time), not before "
            "the application was submitted"
        )
    )
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=2000,
        help_text=gettext_lazy("Where it comes from, e.g. seen in the i-dgtl cabinet"),
    )


class SenderNameChoiceSerializer(serializers.Serializer):
    application = serializers.IntegerField(
        source="application.pk", help_text=gettext_lazy("The id to give a provider as sender_name_application")
    )
    sender_name = serializers.CharField()
    label = serializers.CharField()
    usable = serializers.BooleanField(help_text=gettext_lazy("Approved and started for at least one operator"))
    approved_brands = serializers.ListField(
        source="usable_brands",
        child=serializers.CharField(),
        help_text=gettext_lazy("Operators it is approved for and usable with now"),
    )
    approved_later = serializers.SerializerMethodField(
        help_text=gettext_lazy("Operators it is approved for, usable only from the given time (00:00 Moscow time)")
    )

    def get_approved_later(self, choice) -> list[dict]:
        return [{"brand": brand, "usable_from": start.isoformat()} for brand, start in choice.later]


ActionResult = inline_serializer(
    "SenderNameActionResult", fields={"detail": serializers.CharField(), "application": ApplicationSerializer()}
)


@extend_schema_view(
    list=extend_schema(summary="List sender-name applications"),
    retrieve=extend_schema(summary="One application with its documents and status history"),
)
class SenderNameApplicationViewSet(
    DocumentSizeLimitMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Sender-name applications: file, submit to i-dgtl once, follow or set the status, download documents."""

    parser_classes = [JSONParser, MultiPartParser]  # multipart for the documents of a new application
    serializer_class = ApplicationSerializer
    filterset_class = ApplicationFilter
    queryset = selectors.with_status_readability(
        SenderNameApplication.objects.prefetch_related("documents", "history__changed_by")
    ).order_by("-created_at", "-pk")
    action_permissions = {  # create needs add_, list and retrieve view_ (b24sms/permissions.py)
        "submit": ["sendernames.submit_application"],
        "refresh": ["sendernames.refresh_application_status"],
        "set_status": ["sendernames.set_application_status"],
        "document": ["sendernames.view_sendernameapplication"],
        "choices": ["sendernames.view_sendernameapplication"],
    }

    @extend_schema(
        summary="File an application (multipart with file1..fileN, or JSON without files)",
        description=(
            "Files a draft; nothing is sent to i-dgtl until `submit`. Either `multipart/form-data` with the fields "
            "as form parts and the documents as file parts `file1`, `file2`, ... (in that order), or "
            "`application/json` with the fields only (no documents, so not for PROMO names). Every rule i-dgtl "
            "applies is checked here: a 400 names each bad field (or file part) with its message, and nothing "
            "is stored."
        ),
        request={
            "multipart/form-data": ApplicationMultipartSerializer,
            "application/json": ApplicationCreateSerializer,
        },
        responses={
            201: ApplicationSerializer,
            400: OpenApiResponse(VALIDATION_ERROR_SCHEMA, description="Bad input, by field", examples=ERROR_EXAMPLES),
        },
        examples=[APPLICATION_EXAMPLE],
    )
    def create(self, request):
        serializer = ApplicationCreateSerializer(data=request.data)
        valid = serializer.is_valid()
        if not valid and not isinstance(request.data, Mapping):  # a JSON array, string, number ...
            raise serializers.ValidationError(serializer.errors)
        documents, errors = uploaded_documents(request)
        if not valid or errors:
            raise serializers.ValidationError({**(serializer.errors if not valid else {}), **errors})
        data = dict(serializer.validated_data)
        data["account"] = data.get("account") or None
        application = application_create(documents=documents, created_by=request.user, **data)
        return Response(self._full(application), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Submit to i-dgtl (once; repeated calls change nothing)",
        request=None,
        description="202: queued now (a worker sends it); 200: already queued or submitted, nothing sent again. "
        "400 names what no longer holds (date_from is past, documents, a duplicate, account without key).",
        responses={
            202: ActionResult,
            200: ActionResult,
            400: OpenApiResponse(VALIDATION_ERROR_SCHEMA, description="Cannot be submitted, by field"),
        },
    )
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        application = self.get_object()
        result = application_submit(application_id=application.pk)
        action_record(instance=application, action=Action.SUBMIT, result=result.message, queued=result.queued)
        code = status.HTTP_202_ACCEPTED if result.queued else status.HTTP_200_OK
        return Response({"detail": result.message, "application": self._full(result.application)}, status=code)

    @extend_schema(
        summary="Ask i-dgtl for the status now",
        request=None,
        responses={
            200: ActionResult,
            400: OpenApiResponse(VALIDATION_ERROR_SCHEMA, description="Not submitted yet"),
            502: OpenApiResponse(ActionResult, description="i-dgtl failed; the error is stored"),
        },
    )
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        application = self.get_object()
        result = application_refresh_status(application_id=application.pk)
        action_record(
            instance=application, action=Action.REFRESH_STATUS, result=result.summary, status=result.application.status
        )
        code = status.HTTP_502_BAD_GATEWAY if result.error_kind else status.HTTP_200_OK
        return Response({"detail": result.summary, "application": self._full(result.application)}, status=code)

    @extend_schema(
        summary="Set the status by hand (from i-dgtl's cabinet)",
        request=ManualStatusSerializer,
        description="For a status i-dgtl cannot be read for (or reads late). Recorded in the history with the user, "
        "marked manual; the periodic sync replaces it only with a status further along the review. "
        "The same status, date and note again changes nothing (200 with the same application). "
        "400 names the field: an unknown status, a date in the future or before the submission.",
        responses={200: ActionResult, 400: OpenApiResponse(VALIDATION_ERROR_SCHEMA, description="Bad input, by field")},
        examples=[
            OpenApiExample(
                "Approved in the cabinet",
                request_only=True,
                value={"status": "APPROVED", "date": "2030-01-31", "note": "seen in the i-dgtl cabinet"},
            )
        ],
    )
    @action(detail=True, methods=["post"], url_path="set-status", parser_classes=[JSONParser])
    def set_status(self, request, pk=None):
        application = self.get_object()
        serializer = ManualStatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = application_set_status(
            application_id=application.pk,
            status=data["status"],
            status_date=data["date"],
            note=data["note"],
            user=request.user,
        )
        action_record(
            instance=application,
            action=Action.SET_STATUS,
            result=result.summary,
            status=data["status"],
            date=str(data["date"]),
            note=data["note"],
        )
        return Response({"detail": result.summary, "application": self._full(result.application)})

    @extend_schema(
        summary="Approved names for a provider, each once with its operators",
        description="What a provider's sender_name_application may be: one entry per name (and account), "
        "the operators it is approved for now, and those approved from a later start.",
        responses={200: SenderNameChoiceSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], pagination_class=None, filterset_class=None)
    def choices(self, request):
        return Response(SenderNameChoiceSerializer(selectors.sender_name_choices(), many=True).data)

    @extend_schema(
        summary="Download a document",
        responses={
            (200, content_type): OpenApiResponse(
                OpenApiTypes.BINARY,
                description=gettext_lazy(
                    "The file as an attachment, with the content type judged when it was uploaded"
                ),
            )
            for content_type in DOCUMENT_MIME_TYPES
        },
        parameters=[
            OpenApiParameter(
                "document_id",
                int,
                OpenApiParameter.PATH,
                description=gettext_lazy("The document's id (documents[].id)"),
            )
        ],
    )
    @action(
        detail=True, methods=["get"], url_path=r"documents/(?P<document_id>\d+)", content_negotiation_class=JsonAnswers
    )  # never a 406 for an Accept of the file's type
    def document(self, request, pk=None, document_id=None):
        application = self.get_object()
        document = get_object_or_404(SenderNameDocument, application=application, pk=document_id)
        return document.download_response()

    def _full(self, application):
        application = self.get_queryset().get(pk=application.pk)
        return ApplicationSerializer(application, context=self.get_serializer_context()).data
