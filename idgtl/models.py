"""i-dgtl accounts: an integrator serves several clients, each with its own i-dgtl contract."""
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


def mask_secret(value: str) -> str:
    """What an operator may see of a key once it is saved: its last four characters."""
    if not value:
        return ""
    if len(value) <= 8:
        return "••••"
    return "••••" + value[-4:]


class IdgtlAccount(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    api_url = models.URLField(_("API URL"), default="https://direct.i-dgtl.ru/api/v1")
    sender_names_key = models.CharField(
        _("sender-names key (TOKEN_2)"), max_length=512, blank=True,
        help_text=_("API key of type TOKEN_2, sent unchanged as 'Authorization: Basic KEY'."),
    )
    messages_key = models.CharField(
        _("messages key (TOKEN_1)"), max_length=512, blank=True,
        help_text=_("API key of type TOKEN_1, used to send SMS."),
    )
    is_default = models.BooleanField(_("default account"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("i-dgtl account")
        verbose_name_plural = _("i-dgtl accounts")
        ordering = ["name"]
        permissions = [("check_account_keys", "Can check i-dgtl account keys with i-dgtl")]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="idgtl_one_default_account"),
        ]

    def __str__(self):
        return self.name

    @property
    def sender_names_key_masked(self) -> str:
        return mask_secret(self.sender_names_key)

    @property
    def messages_key_masked(self) -> str:
        return mask_secret(self.messages_key)
