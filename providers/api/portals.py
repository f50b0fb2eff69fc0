"""REST API: /api/portals/, /api/providers/ (staff with the model permissions, b24sms/permissions.py).

Thin: serializers check types, the registration services enforce the rules (their Django
ValidationError becomes a 400 naming the field, see b24sms/api.py).
"""

from django.db import transaction
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from audit.services import Action, action_record
from common.api import ERROR_REF, JsonTypesMixin, RelatedIdsField
from providers.models import (
    Installation,
    InstallationState,
    Provider,
    ProviderRegistration,
    RegistrationState,
    RepairReason,
)
from providers.services import registration as registration_services
from sendernames.models import SenderNameApplication


class InstallationSerializer(serializers.ModelSerializer):
    application_name = serializers.CharField(source="application.name", read_only=True)
    needs_reinstall = serializers.SerializerMethodField(
        help_text=_("The application must be reinstalled on the portal.")
    )

    class Meta:
        model = Installation
        fields = [
            "id",
            "application",
            "application_name",
            "member_id",
            "domain",
            "client_endpoint",
            "server_endpoint",
            "state",
            "needs_reinstall",
            "last_error",
            "access_token_expires_at",
            "scope",
            "portal_status",
            "installed_by_user_id",
            "account",
            "default_region",
            "rate_limit_burst",
            "rate_limit_drain_per_second",
            "quota_monthly_parts",
            "quota_recipient_per_hour",
            "quota_warning_percent",
            "lacks_sender_update",
            "bound_events",
            "events_bind_attempted_at",
            "installed_at",
            "uninstalled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_needs_reinstall(self, obj) -> bool:
        return obj.state == InstallationState.NEEDS_REINSTALL


class InstallationQuotasSerializer(JsonTypesMixin, serializers.ModelSerializer):
    """The quotas of a portal, the only fields of an installation the API changes (PATCH)."""

    quota_monthly_parts = serializers.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        allow_null=True,
        required=False,
        help_text=_("SMS parts per calendar month (USAGE_TIME_ZONE); null means no limit."),
    )
    quota_recipient_per_hour = serializers.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        allow_null=True,
        required=False,
        help_text=_("Messages to one phone number within any 60 minutes; null means no limit."),
    )
    quota_warning_percent = serializers.IntegerField(
        min_value=0,
        max_value=100,
        required=False,
        help_text=_('Share of the monthly limit at which the portal shows under "Needs attention".'),
    )

    class Meta:
        model = Installation
        fields = ["quota_monthly_parts", "quota_recipient_per_hour", "quota_warning_percent"]


class RegistrationSerializer(serializers.ModelSerializer):
    domain = serializers.CharField(source="installation.domain", read_only=True)
    repair_reason = serializers.ChoiceField(
        choices=RepairReason.choices,
        allow_blank=True,
        read_only=True,
        help_text=_("Why it was last added back; empty when it never was."),
    )

    class Meta:
        model = ProviderRegistration
        fields = [
            "id",
            "installation",
            "domain",
            "state",
            "last_error",
            "registered_at",
            "checked_at",
            "repaired_at",
            "repair_reason",
            "repair_count",
            "updated_at",
        ]
        read_only_fields = fields


class RegisteredInstallationsField(RelatedIdsField):
    """Installation ids; read from the (prefetched) registrations that are not removed."""

    def get_attribute(self, instance):
        return [r.installation for r in instance.registrations.all() if r.state != RegistrationState.REMOVED]


class ProviderSerializer(JsonTypesMixin, serializers.ModelSerializer):
    name_translations = serializers.JSONField(
        required=False, help_text=_('Name per language, e.g. {"ru": "…", "en": "…"}; sent to Bitrix24 as NAME object.')
    )
    description_translations = serializers.JSONField(
        required=False, help_text=_("Description per language; sent to Bitrix24 as DESCRIPTION object.")
    )
    sender_name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=11,
        help_text=_(
            "The i-dgtl sender name. Taken from sender_name_application when that is set; otherwise type a "
            "name registered outside b24sms."
        ),
    )
    sender_name_application = serializers.PrimaryKeyRelatedField(
        queryset=SenderNameApplication.objects.all(),
        required=False,
        allow_null=True,
        help_text=_(
            "An APPROVED sender-name application whose start date (00:00 Moscow time) has passed. "
            "GET /api/sender-names/choices/ lists each approved name once with the operators it is approved "
            "for, and the id to give here."
        ),
    )
    installations = RegisteredInstallationsField(
        child_relation=serializers.PrimaryKeyRelatedField(queryset=Installation.objects.all()),
        required=False,
        help_text=_(
            "Installations (portals) the provider is on. On write: portals to register it on (added to the "
            "current ones; use the remove action to take it off a portal)."
        ),
    )
    registrations = RegistrationSerializer(many=True, read_only=True)

    class Meta:
        model = Provider
        fields = [
            "id",
            "code",
            "type",
            "name",
            "name_translations",
            "description",
            "description_translations",
            "sender_name",
            "sender_name_application",
            "installations",
            "registrations",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "type", "registrations", "created_at", "updated_at"]
        extra_kwargs = {"code": {"validators": []}}  # uniqueness is checked by the service

    def create(self, validated_data):
        return registration_services.provider_create(**validated_data)

    def update(self, instance, validated_data):
        return registration_services.provider_update(provider=instance, **validated_data)


class InstallationChoiceSerializer(JsonTypesMixin, serializers.Serializer):
    installations = RelatedIdsField(
        child_relation=serializers.PrimaryKeyRelatedField(queryset=Installation.objects.all()),
        required=False,
        help_text=_(
            "Installation ids; omitted means every active portal (register) or every portal it is on (check, remove)."
        ),
    )


class PortalCheckSerializer(serializers.Serializer):
    installation_id = serializers.IntegerField()
    domain = serializers.CharField()
    code = serializers.CharField(help_text=_("The provider's code."))
    registration_state = serializers.CharField(allow_null=True)
    present_on_portal = serializers.BooleanField(allow_null=True, help_text=_("null when the check failed."))
    on_portal = serializers.ListField(child=serializers.CharField(), help_text=_("Codes sender.list returned."))
    missing_on_portal = serializers.ListField(
        child=serializers.CharField(), help_text=_("Registered here but absent on the portal (marked failed).")
    )
    unknown_on_portal = serializers.ListField(
        child=serializers.CharField(), help_text=_("On the portal but not registered here.")
    )
    error = serializers.CharField(help_text=_("Why the check failed; empty when it ran."))
    summary = serializers.CharField()


@extend_schema_view(
    list=extend_schema(summary=_("List installations (portals)")),
    retrieve=extend_schema(summary=_("One installation")),
    partial_update=extend_schema(summary=_("Change the quotas of an installation"), responses=InstallationSerializer),
)
class PortalViewSet(mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Portals b24sms is installed on. Tokens are never exposed. PATCH changes the quotas only."""

    queryset = Installation.objects.select_related("application").order_by("domain", "id")
    serializer_class = InstallationSerializer
    filterset_fields = ["state", "application"]
    http_method_names = ["get", "patch", "head", "options"]

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return InstallationQuotasSerializer
        return InstallationSerializer

    def update(self, request, *args, **kwargs):
        kwargs["partial"] = True
        super().update(request, *args, **kwargs)
        return Response(InstallationSerializer(self.get_object(), context=self.get_serializer_context()).data)


@extend_schema_view(
    list=extend_schema(summary=_("List providers")),
    retrieve=extend_schema(summary=_("One provider with its registrations")),
    create=extend_schema(
        summary=_("Create a provider (and register it on the given installations)"),
        examples=[
            OpenApiExample(
                "Own sender name",
                request_only=True,
                value={"code": "myshop_sms", "name": "MyShop SMS", "sender_name": "MYSHOP"},
            )
        ],
    ),
    update=extend_schema(summary=_("Change a provider; the change is pushed to its portals")),
    partial_update=extend_schema(summary=_("Change some fields of a provider; pushed to its portals")),
    destroy=extend_schema(
        summary=_("Delete a provider and delete it from its portals"),
        responses={
            204: None,
            400: OpenApiResponse(
                ERROR_REF,
                description=_(
                    "The provider has messages (their history needs it): remove it from the portals instead."
                ),
            ),
        },
    ),
)
class ProviderViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Provider.objects.prefetch_related("registrations__installation").order_by("code")
    serializer_class = ProviderSerializer
    action_permissions = {
        "register": ["providers.register_provider"],
        "remove": ["providers.register_provider"],
        "check": ["providers.check_provider"],
    }

    def _may_register(self, serializer):
        """Installations given on create or update register the provider there: that needs register_provider."""
        if serializer.validated_data.get("installations") and not self.request.user.has_perm(
            "providers.register_provider"
        ):
            raise PermissionDenied()  # DRF's own (translated) message

    def _record_registering(self, serializer):
        """The edit itself is in the audit trail (auditlog); registering it on the portals given is an action."""
        if serializer.validated_data.get("installations"):
            action_record(
                instance=serializer.instance,
                action=Action.REGISTER,
                portals=[installation.domain for installation in serializer.validated_data["installations"]],
            )

    def perform_create(self, serializer):
        self._may_register(serializer)
        super().perform_create(serializer)
        self._record_registering(serializer)

    def perform_update(self, serializer):
        self._may_register(serializer)
        super().perform_update(serializer)
        self._record_registering(serializer)

    def perform_destroy(self, instance):
        registration_services.provider_delete(provider=instance)

    def _installations(self, request):
        serializer = InstallationChoiceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data.get("installations")

    def _registrations(self, provider):
        return RegistrationSerializer(
            provider.registrations.select_related("installation").order_by("installation__domain"), many=True
        ).data

    @extend_schema(
        summary=_("Register the provider on portals (sender.add, in the background)"),
        request=InstallationChoiceSerializer,
        responses={202: RegistrationSerializer(many=True)},
    )
    @action(detail=True, methods=["post"], pagination_class=None)
    def register(self, request, pk=None):
        provider = self.get_object()
        installations = self._installations(request)
        with transaction.atomic():
            registrations = registration_services.provider_register(provider=provider, installations=installations)
            action_record(
                instance=provider, action=Action.REGISTER, portals=[r.installation.domain for r in registrations]
            )
        return Response(self._registrations(provider), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary=_("Remove the provider from portals (sender.delete, in the background)"),
        request=InstallationChoiceSerializer,
        responses={202: RegistrationSerializer(many=True)},
    )
    @action(detail=True, methods=["post"], pagination_class=None)
    def remove(self, request, pk=None):
        provider = self.get_object()
        installations = self._installations(request)
        with transaction.atomic():
            registrations = registration_services.provider_unregister(provider=provider, installations=installations)
            action_record(
                instance=provider, action=Action.REMOVE, portals=[r.installation.domain for r in registrations]
            )
        return Response(self._registrations(provider), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary=_("Compare sender.list on the portals with our records (drift)"),
        request=InstallationChoiceSerializer,
        responses={200: PortalCheckSerializer(many=True)},
    )
    @action(detail=True, methods=["post"], pagination_class=None)
    def check(self, request, pk=None):
        provider = self.get_object()
        results = registration_services.provider_check(provider=provider, installations=self._installations(request))
        action_record(
            instance=provider,
            action=Action.CHECK,
            result="; ".join(f"{row['domain']}: {row['summary']}" for row in results),
            portals=[row["domain"] for row in results],
        )
        return Response(PortalCheckSerializer(results, many=True).data)


router = SimpleRouter()
router.register("portals", PortalViewSet, basename="portal")
router.register("providers", ProviderViewSet, basename="provider")

urlpatterns = router.urls
