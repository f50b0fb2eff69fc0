"""REST API: /api/messages/ (staff with providers.view_message), read-only, with each message's timeline
and status reports."""

import django_filters
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers, viewsets
from rest_framework.routers import SimpleRouter

from common.api import DateTimeFilter, FilterSet, IdFilter
from providers.models import Message, MessageState, MessageStatusChange, StatusReport


class MessageStatusChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageStatusChange
        fields = ["id", "created_at", "previous_state", "state", "idgtl_status", "source", "detail"]


class StatusReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = StatusReport
        fields = ["id", "status", "state", "attempts", "last_error", "created_at", "reported_at", "next_attempt_at"]


class MessageSerializer(serializers.ModelSerializer):
    portal = serializers.CharField(source="installation.domain", read_only=True, help_text=_("Portal domain."))
    provider_code = serializers.CharField(source="provider.code", read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "installation",
            "portal",
            "provider",
            "provider_code",
            "message_id",
            "module_id",
            "state",
            "message_to",
            "destination",
            "sender_name",
            "text",
            "encoding",
            "parts",
            "idgtl_message_uuid",
            "idgtl_status",
            "idgtl_status_at",
            "error_code",
            "error_message",
            "send_attempts",
            "created_at",
            "sending_started_at",
            "sent_at",
            "final_at",
            "bitrix_sent_at",
            "anonymised_at",
        ]
        read_only_fields = fields


class MessageDetailSerializer(MessageSerializer):
    timeline = MessageStatusChangeSerializer(source="status_changes", many=True, read_only=True)
    status_reports = StatusReportSerializer(many=True, read_only=True)

    class Meta(MessageSerializer.Meta):
        fields = MessageSerializer.Meta.fields + [
            "bindings",
            "workflow_id",
            "document_id",
            "document_type",
            "author_user_id",
            "timeline",
            "status_reports",
        ]
        read_only_fields = fields


class MessageFilter(FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=MessageState.choices, help_text=_("Our state (repeatable)."))
    status = django_filters.MultipleChoiceFilter(
        field_name="state", choices=MessageState.choices, help_text=_("Same as state.")
    )
    idgtl_status = django_filters.CharFilter()
    portal = IdFilter(field_name="installation_id", help_text=_("Installation (portal) id."))
    portal_domain = django_filters.CharFilter(field_name="installation__domain", lookup_expr="iexact")
    provider = IdFilter(field_name="provider_id", help_text=_("Provider id."))
    provider_code = django_filters.CharFilter(field_name="provider__code")
    created_from = DateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text=_("Received at or after this time (ISO 8601).")
    )
    created_to = DateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text=_("Received before this time (ISO 8601).")
    )
    destination = django_filters.CharFilter(field_name="destination", lookup_expr="contains")
    message_id = django_filters.CharFilter()

    class Meta:
        model = Message
        fields = []


class MessageViewSet(viewsets.ReadOnlyModelViewSet):
    """SMS received from Bitrix24: state, i-dgtl status, and (in detail) the timeline and status reports."""

    filterset_class = MessageFilter

    def get_queryset(self):
        queryset = Message.objects.select_related("installation", "provider").order_by("-created_at", "-id")
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("status_changes", "status_reports")
        return queryset

    def get_serializer_class(self):
        return MessageDetailSerializer if self.action == "retrieve" else MessageSerializer


router = SimpleRouter()
router.register("messages", MessageViewSet, basename="message")

urlpatterns = [path("", include(router.urls))]
