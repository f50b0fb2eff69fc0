"""Admin action "Send a test SMS" for a provider (hooked into ProviderAdmin.actions).

A form page asks for the number, the text and (when the provider is registered on several portals)
the portal; the SMS is then posted to our own HANDLER as Bitrix24 would (providers/services/test_sms.py)
and the operator lands on the message's page to follow its timeline.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from audit.services import Action, action_record
from providers.models import Installation, RegistrationState
from providers.services.test_sms import SmsTestError, provider_send_test_sms


class TestSmsForm(forms.Form):
    phone = forms.CharField(label=_("Phone number"), max_length=64, help_text=_("For example +79001234567."))
    text = forms.CharField(
        label=_("Text"),
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        initial=_("b24sms test message"),
    )
    installation = forms.ModelChoiceField(
        label=_("Portal"), queryset=Installation.objects.none(), required=False, empty_label=None
    )

    def __init__(self, *args, provider=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["installation"].queryset = Installation.objects.filter(
            registrations__provider=provider, registrations__state=RegistrationState.REGISTERED
        ).order_by("domain")


@admin.action(
    description=_("Send a test SMS"), permissions=["send_test_sms"]
)  # ModelAdmin.has_send_test_sms_permission
def send_test_sms(modeladmin, request, queryset):
    if queryset.count() != 1:
        modeladmin.message_user(request, _("Choose exactly one provider to send a test SMS."), messages.WARNING)
        return None
    provider = queryset.get()
    form = TestSmsForm(request.POST if "send" in request.POST else None, provider=provider)
    if form.is_bound and form.is_valid():
        installation = form.cleaned_data.get("installation")
        try:
            result = provider_send_test_sms(
                provider=provider,
                phone=form.cleaned_data["phone"],
                text=form.cleaned_data["text"],
                installation_id=installation.pk if installation else None,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        except SmsTestError as exc:
            form.add_error(None, str(exc))
        else:
            text = _("Test SMS %(id)s accepted by the handler of %(portal)s; follow its timeline below.") % {
                "id": result.message_id,
                "portal": result.installation.domain,
            }
            action_record(
                instance=provider,
                action=Action.TEST_SMS,
                result=text,
                portal=result.installation.domain,
                message_id=result.message_id,
                message=result.message.pk if result.message else None,
            )
            modeladmin.message_user(request, text, messages.SUCCESS)
            try:
                return redirect(reverse("admin:providers_message_change", args=[result.message.pk]))
            except NoReverseMatch:
                return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Send a test SMS with %(provider)s") % {"provider": provider.code},
        "provider": provider,
        "form": form,
        "opts": modeladmin.model._meta,
        "action_name": "send_test_sms",
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/providers/provider/test_sms.html", context)
