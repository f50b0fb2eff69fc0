"""The admin form for a sender-name application: the fields plus several documents at once."""

import datetime as dt
from functools import wraps

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt

from idgtl.contract import Brand, SenderNameStatus
from idgtl.services import account_get_default
from sendernames import validation
from sendernames.models import SenderNameApplication, SenderNameGroup
from sendernames.services.groups import group_find_repeat, request_fingerprint


class DocumentSizeGuard(FileUploadHandler):
    """The first upload handler of the admin's add and change views: a file part that passes
    SENDER_NAME_MAX_DOCUMENT_SIZE is dropped at the chunk that passes it (SkipFile: the rest of it is
    discarded as it arrives, never stored), instead of first being written whole to a temporary file.
    The form then names it (``request.oversized_documents``)."""

    def new_file(self, field_name, file_name, *args, **kwargs):
        super().new_file(field_name, file_name, *args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > settings.SENDER_NAME_MAX_DOCUMENT_SIZE:
            refused = getattr(self.request, "oversized_documents", [])
            refused.append(self.file_name)
            self.request.oversized_documents = refused
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler stores the file


def upload_guarded(view):
    """The view with DocumentSizeGuard in front of Django's upload handlers. Exempt from the CSRF
    middleware, which would read the body before the guard is in place: the admin view checks CSRF
    itself (admin_view wraps it in csrf_protect), after."""

    @csrf_exempt
    @wraps(view)
    def guarded(request, *args, **kwargs):
        if request.method == "POST":
            request.upload_handlers.insert(0, DocumentSizeGuard(request))
        return view(request, *args, **kwargs)

    return guarded


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "application/pdf,image/png,image/jpeg"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if not data:
            return []
        files = data if isinstance(data, (list, tuple)) else [data]
        return [super(MultipleFileField, self).clean(f, initial) for f in files]


class SenderNameApplicationForm(forms.ModelForm):
    date_from = forms.DateField(
        label=_("start date"),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("No earlier than tomorrow (Moscow time); the name is usable from the start of that day."),
    )
    new_documents = MultipleFileField(
        label=_("documents"),
        required=False,
        help_text=_("PDF, PNG or JPEG (judged by content); several files may be chosen. Required for PROMO names."),
    )

    class Meta:
        model = SenderNameApplication
        fields = [
            "account",
            "channel_type",
            "common_type",
            "brand",
            "date_from",
            "sender_name",
            "counteragent_name",
            "counteragent_inn",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.date_from:
            self.initial["date_from"] = validation.timezone.localtime(self.instance.date_from, validation.MOSCOW).date()
        if "account" in self.fields:
            self.fields["account"].required = False
            self.fields["account"].help_text = _("Empty: the default account.")
        if "sender_name" in self.fields:
            self.fields["sender_name"].max_length = 64  # the rule's own message beats "at most 11 characters"
            self.fields["sender_name"].widget.attrs.pop("maxlength", None)

    def clean_date_from(self):
        """The start of that Moscow day (aware); whether it is early enough is checked with the other rules."""
        value = self.cleaned_data.get("date_from")
        return dt.datetime.combine(value, dt.time.min, tzinfo=validation.MOSCOW) if value else value

    upload_request = None  # the admin sets it (get_form): uploads its DocumentSizeGuard refused

    def clean(self):
        cleaned = super().clean()
        limit = settings.SENDER_NAME_MAX_DOCUMENT_SIZE
        for name in getattr(self.upload_request, "oversized_documents", ()):
            self.add_error(
                "new_documents",
                ValidationError(
                    _("%(name)s is more than %(limit)s bytes; a document may be at most %(limit)s bytes."),
                    code="too_large",
                    params={"name": name, "limit": limit},
                ),
            )
        documents = cleaned.get("new_documents") or []
        existing = self.instance.documents.count() if self.instance.pk else 0
        try:
            validation.validate_documents(documents)
            validation.validate_document_count(existing + len(documents))
        except ValidationError as exc:
            self.add_error("new_documents", exc)
        required = ["common_type", "brand", "date_from", "sender_name", "counteragent_name", "counteragent_inn"]
        if any(name in self.errors for name in required):
            return cleaned
        if self.instance.pk:
            account = self.instance.account  # fixed once filed
        else:
            account = cleaned.get("account") or account_get_default()
        try:
            values = validation.application_validate(
                account_id=account.pk,
                channel_type=cleaned.get("channel_type"),
                common_type=cleaned.get("common_type"),
                brand=cleaned.get("brand"),
                date_from=cleaned.get("date_from"),
                sender_name=cleaned.get("sender_name"),
                counteragent_name=cleaned.get("counteragent_name"),
                counteragent_inn=cleaned.get("counteragent_inn"),
                document_count=existing + len(documents),
                exclude_id=self.instance.pk,
            )
        except ValidationError as exc:
            for field, errors in exc.error_dict.items():
                self.add_error("new_documents" if field == "documents" else field, errors)
            return cleaned
        cleaned.update(values)
        cleaned["account"] = account
        return cleaned


def _oversized_errors(form, field: str) -> None:
    limit = settings.SENDER_NAME_MAX_DOCUMENT_SIZE
    for name in getattr(form.upload_request, "oversized_documents", ()):
        form.add_error(
            field,
            ValidationError(
                _("%(name)s is more than %(limit)s bytes; a document may be at most %(limit)s bytes."),
                code="too_large",
                params={"name": name, "limit": limit},
            ),
        )


class SenderNameGroupForm(forms.ModelForm):
    """One name for several operators: the application's fields, the operators, the documents (once)."""

    brands = forms.MultipleChoiceField(
        label=_("operators"),
        choices=Brand.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "One application per operator is filed with i-dgtl (each is charged). The name is checked "
            "against every chosen operator's rules first: MegaFon and Yota allow fewer characters."
        ),
    )
    date_from = forms.DateField(
        label=_("start date"),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("No earlier than tomorrow (Moscow time); the name is usable from 00:00 Moscow time that day."),
    )
    new_documents = MultipleFileField(
        label=_("documents"),
        required=False,
        help_text=_(
            "PDF, PNG or JPEG (judged by content); sent with every operator's application. Required for PROMO names."
        ),
    )

    class Meta:
        model = SenderNameGroup
        fields = [
            "account",
            "channel_type",
            "common_type",
            "date_from",
            "sender_name",
            "counteragent_name",
            "counteragent_inn",
        ]

    upload_request = None  # the admin sets it (get_form): uploads its DocumentSizeGuard refused
    repeat_of = None  # the group this very request already filed (a double submit), found by clean()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "account" in self.fields:
            self.fields["account"].required = False
            self.fields["account"].help_text = _("Empty: the default account.")
        if "sender_name" in self.fields:
            self.fields["sender_name"].max_length = 64  # the rule's own message beats "at most 11 characters"
            self.fields["sender_name"].widget.attrs.pop("maxlength", None)

    def clean_date_from(self):
        value = self.cleaned_data.get("date_from")
        return dt.datetime.combine(value, dt.time.min, tzinfo=validation.MOSCOW) if value else value

    def clean(self):
        cleaned = super().clean()
        _oversized_errors(self, "new_documents")
        documents = cleaned.get("new_documents") or []
        try:
            validation.validate_documents(documents)
        except ValidationError as exc:
            self.add_error("new_documents", exc)
        required = ["common_type", "date_from", "sender_name", "counteragent_name", "counteragent_inn"]
        if any(name in self.errors for name in required + ["new_documents"]):
            return cleaned
        account = cleaned.get("account") or account_get_default()
        values = {
            name: cleaned.get(name)
            for name in [
                "channel_type",
                "common_type",
                "date_from",
                "sender_name",
                "counteragent_name",
                "counteragent_inn",
            ]
        }
        fingerprint = request_fingerprint(
            account_id=account.pk, brands=cleaned.get("brands"), documents=documents, **values
        )
        self.repeat_of = group_find_repeat(account.pk, fingerprint, validation.timezone.now())
        if self.repeat_of is not None:  # filed a moment ago: saving finds it, nothing is sent again
            cleaned["account"] = account
            return cleaned
        try:
            values, brands = validation.group_validate(
                account_id=account.pk, brands=cleaned.get("brands"), document_count=len(documents), **values
            )
        except ValidationError as exc:
            for field, errors in exc.error_dict.items():
                self.add_error("new_documents" if field == "documents" else field, errors)
            return cleaned
        cleaned.update(values)
        cleaned["brands"] = brands
        cleaned["account"] = account
        return cleaned


class AddBrandForm(forms.Form):
    brand = forms.ChoiceField(label=_("operator"), choices=())

    def __init__(self, *args, brands=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["brand"].choices = [(brand, Brand(brand).label) for brand in brands]


class ManualStatusForm(forms.Form):
    """The status an operator read in i-dgtl's cabinet, the date it shows, and a note."""

    status = forms.ChoiceField(label=_("status"), choices=SenderNameStatus.choices)
    date = forms.DateField(
        label=_("status date"),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("The date i-dgtl's cabinet shows for this status; not in the future."),
    )
    note = forms.CharField(
        label=_("note"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text=_("Where it comes from, e.g. “seen in the i-dgtl cabinet”."),
    )

    def clean_date(self):
        value = self.cleaned_data.get("date")
        return validation.parse_status_date(value) if value else value
