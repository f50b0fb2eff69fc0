"""Russian is complete: every string of locale/ru is translated, and the committed .mo matches the .po."""

import re
from pathlib import Path

from django.utils import translation

PO = Path(__file__).resolve().parent.parent.parent / "locale" / "ru" / "LC_MESSAGES" / "django.po"


def _unquote(lines):
    import json

    return json.loads('"' + "".join(re.match(r'^[^"]*"(.*)"\s*$', line).group(1) for line in lines) + '"')


def po_entries():
    """(msgid, msgid_plural, [msgstr...], flags, msgctxt) for every entry but the header."""
    entries = []
    for block in PO.read_text(encoding="utf-8").split("\n\n"):
        lines = block.strip().splitlines()
        flags = " ".join(line for line in lines if line.startswith("#,"))
        fields, current = {}, None
        for line in lines:
            match = re.match(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d\])?) ", line)
            if match:
                current = match.group(1)
                fields[current] = [line]
            elif current and line.startswith('"'):
                fields[current].append(line)
        if "msgid" not in fields:
            continue
        msgid = _unquote(fields["msgid"])
        if not msgid:
            continue
        plural = _unquote(fields["msgid_plural"]) if "msgid_plural" in fields else None
        strs = [_unquote(v) for k, v in sorted(fields.items()) if k.startswith("msgstr")]
        context = _unquote(fields["msgctxt"]) if "msgctxt" in fields else None
        entries.append((msgid, plural, strs, flags, context))
    return entries


def test_every_string_is_translated():
    entries = po_entries()
    assert len(entries) > 300
    untranslated = [msgid for msgid, _plural, strs, _flags, _context in entries if not all(strs)]
    fuzzy = [msgid for msgid, _plural, _strs, flags, _context in entries if "fuzzy" in flags]
    assert not untranslated, f"untranslated: {untranslated[:10]}"
    assert not fuzzy, f"fuzzy: {fuzzy[:10]}"


def test_placeholders_are_kept():
    for msgid, _plural, strs, _flags, _context in po_entries():
        wanted = set(re.findall(r"%\(\w+\)[sd]", msgid))
        for text in strs:
            assert set(re.findall(r"%\(\w+\)[sd]", text)) == wanted, (msgid, text)


def test_compiled_catalog_matches_the_po():
    with translation.override("ru"):
        for msgid, plural, strs, _flags, context in po_entries():
            if context is not None:  # a translation in a context (b24sms/admin_site.py: cases and genders)
                assert translation.pgettext(context, msgid) == strs[0], (context, msgid)
            elif plural is None:
                assert translation.gettext(msgid) == strs[0], msgid
            else:
                assert translation.ngettext(msgid, plural, 1) == strs[0], msgid
