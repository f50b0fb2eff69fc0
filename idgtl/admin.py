"""Admin for i-dgtl accounts. Keys are write-only: after saving, only ``••••1234`` is ever shown."""
from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils.translation import gettext, gettext_lazy as _

from .client import IdgtlClient, IdgtlError
from .models import IdgtlAccount, mask_secret

SECRET_FIELDS = ("sender_names_key", "messages_key")


class SecretInput(forms.PasswordInput):
    """A password input that never renders the saved value; the placeholder shows it masked."""

    def __init__(self, attrs=None):
        super().__init__(attrs={"autocomplete": "new-password", "size": 60, **(attrs or {})}, render_value=False)


class SecretKeepingForm(forms.ModelForm):
    """A model form whose ``secret_fields`` keep the saved value when left blank.

    Reusable for any model with write-only secrets (i-dgtl keys, a Bitrix24 client_secret): set
    ``secret_fields`` on the subclass. A secret the model requires is required until one is saved.
    """

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            field = self.fields[name]
            field.widget = SecretInput()
            saved = getattr(self.instance, name, "") if self.instance.pk else ""
            field.required = not saved and not self._meta.model._meta.get_field(name).blank
            if saved:
                field.widget.attrs["placeholder"] = mask_secret(saved)
                field.help_text = _("Saved: %(masked)s. Leave blank to keep it; type a new value to "
                                    "replace it.") % {"masked": mask_secret(saved)}
            self.initial.pop(name, None)

    def clean(self):
        cleaned_data = super().clean()
        for name in self.secret_fields:
            if name in cleaned_data:
                value = (cleaned_data[name] or "").strip()
                cleaned_data[name] = value or (getattr(self.instance, name, "") if self.instance.pk else "")
        return cleaned_data


class IdgtlAccountForm(SecretKeepingForm):
    secret_fields = SECRET_FIELDS
    api_url = forms.URLField(label=_("API URL"), max_length=200, assume_scheme="https")

    def _get_validation_exclusions(self):
        # "one default account" is kept by save_model (the new default replaces the old one), not refused here
        return super()._get_validation_exclusions() | {"is_default"}

    class Meta:
        model = IdgtlAccount
        fields = ["name", "api_url", "sender_names_key", "messages_key", "is_default"]


@admin.register(IdgtlAccount)
class IdgtlAccountAdmin(admin.ModelAdmin):
    form = IdgtlAccountForm
    list_display = ["name", "api_url", "is_default", "sender_names_key_display", "messages_key_display", "updated_at"]
    list_filter = ["is_default"]
    search_fields = ["name", "api_url"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["check_keys"]

    @admin.display(description=_("sender-names key (TOKEN_2)"))
    def sender_names_key_display(self, obj):
        return obj.sender_names_key_masked or "—"

    @admin.display(description=_("messages key (TOKEN_1)"))
    def messages_key_display(self, obj):
        return obj.messages_key_masked or "—"

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            if obj.is_default:  # one default account: the new default replaces the old one
                IdgtlAccount.objects.filter(is_default=True).exclude(pk=obj.pk).update(is_default=False)
            super().save_model(request, obj, form, change)

    @admin.action(description=_("Check the keys with i-dgtl"))
    def check_keys(self, request, queryset):
        """One read per key with the endpoint of its type, so a key of the wrong type shows as such (4030)."""
        for account in queryset:
            checks = ((gettext("sender-names key"), account.sender_names_key, IdgtlClient.for_sender_names,
                       lambda client: client.list_sender_names(per_page=1)),
                      (gettext("messages key"), account.messages_key, IdgtlClient.for_messages,
                       lambda client: client.get_messages(per_page=1)))
            for label, key, make_client, read in checks:
                context = {"account": account, "key": label}
                if not key:
                    self.message_user(request, gettext("%(account)s: %(key)s is not set.") % context, messages.WARNING)
                    continue
                with make_client(account, max_retries=0, timeout=10) as client:
                    try:
                        read(client)
                    except IdgtlError as exc:
                        self.message_user(request, gettext("%(account)s: %(key)s failed: %(error)s") % {
                            **context, "error": exc}, messages.ERROR)
                        continue
                self.message_user(request, gettext("%(account)s: %(key)s works.") % context, messages.SUCCESS)
