"""REST API: POST /api/providers/{id}/test-sms/ — send a test SMS through the whole pipeline
(staff with providers.send_test_sms)."""

from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import Action, action_record
from common.api import ERROR_REF, IdField, JsonTypesMixin
from providers.models import Provider
from providers.services.test_sms import SmsTestError, provider_send_test_sms


class TestSmsRequestSerializer(JsonTypesMixin, serializers.Serializer):
    phone = serializers.CharField(max_length=64, help_text=_("The number to send the test SMS to, e.g. +79001234567."))
    text = serializers.CharField(max_length=1000, help_text=_("The text of the test SMS."))
    installation = IdField(
        required=False,
        allow_null=True,
        help_text=_("The installation (portal) id; needed only when the provider is registered on several portals."),
    )


class TestSmsResponseSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text=_("Our message id: GET /api/messages/{id}/ shows its timeline."))
    message_id = serializers.CharField(help_text=_("The Bitrix24 message_id the test SMS was posted with."))
    state = serializers.CharField(help_text=_("The message's state right after the handler accepted it."))
    installation = serializers.IntegerField()
    portal = serializers.CharField()
    handler_status = serializers.IntegerField(help_text=_("The HTTP status our handler answered."))
    via = serializers.CharField(help_text=_("handler: posted by b24sms; fake-bitrix24: posted by the sandbox portal."))


class ProviderTestSmsView(APIView):
    required_permissions = ["providers.send_test_sms"]  # no queryset: b24sms/permissions.py needs it stated

    @extend_schema(
        request=TestSmsRequestSerializer,
        responses={
            201: TestSmsResponseSerializer,
            502: OpenApiResponse(
                ERROR_REF, description=_("The HANDLER could not be reached, or refused the SMS; nothing was sent.")
            ),
        },
        summary="Send a test SMS",
        tags=["providers"],
        description=str(
            _(
                "Posts an SMS to our own HANDLER as Bitrix24 would for a message without an author (form "
                "body to the installation's handler URL), so it travels the whole pipeline — in production "
                "through the real i-dgtl gateway. 502 when the handler cannot be reached or refuses it."
            )
        ),
    )
    def post(self, request, pk: int):
        provider = get_object_or_404(Provider, pk=pk)
        data = TestSmsRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            result = provider_send_test_sms(
                provider=provider,
                phone=data.validated_data["phone"],
                text=data.validated_data["text"],
                installation_id=data.validated_data.get("installation"),
            )
        except SmsTestError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_502_BAD_GATEWAY)
        message = result.message
        action_record(
            instance=provider,
            action=Action.TEST_SMS,
            portal=result.installation.domain,
            message_id=result.message_id,
            message=message.pk if message else None,
        )
        body = {
            "id": message.pk,
            "message_id": message.message_id,
            "state": message.state,
            "installation": result.installation.pk,
            "portal": result.installation.domain,
            "handler_status": result.handler_status,
            "via": result.via,
        }
        return Response(TestSmsResponseSerializer(body).data, status=status.HTTP_201_CREATED)


urlpatterns = [
    path("providers/<int:pk>/test-sms/", ProviderTestSmsView.as_view(), name="provider-test-sms"),
]
