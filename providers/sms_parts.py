"""What an SMS text costs: its encoding and its number of parts (3GPP TS 23.038 and 23.040).

- **GSM-7** when every character is in the GSM 03.38 default alphabet or its extension table; a
  character of the extension table (``{ } [ ] ~ \\ | ^ €`` and form feed) is sent as ESC + code, so
  it counts as two. One SMS holds 160 septets; a longer text is split into parts of 153 (7 septets
  go to the concatenation header).
- **UCS-2** otherwise (Cyrillic, emoji, a tab, ...): UTF-16 code units, 70 in one SMS, 67 per part.
  A character outside the Basic Multilingual Plane (most emoji) is a surrogate pair: two units.
- A part never splits an escape sequence or a surrogate pair (handsets could not join them again):
  such a character that does not fit moves whole to the next part, as SMS centres and phones do.

The alphabet comes from the maintained ``gsm0338`` codec (read through its public decoder once, at
import), not from a table of our own. ``sms_parts`` is called once per message, at intake (the
HANDLER refuses a text over ``MESSAGES_MAX_PARTS``); the result is stored on the message.
"""
import codecs
import re
from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

GSM7 = "gsm7"
UCS2 = "ucs2"
SINGLE_PART_UNITS = {GSM7: 160, UCS2: 70}
MULTIPART_UNITS = {GSM7: 153, UCS2: 67}
_ESCAPE = 0x1B


def _gsm_alphabet() -> tuple[str, str]:
    """(default alphabet, extension table) as characters, from the codec's decoder."""
    decode = codecs.lookup("gsm03.38").decode
    basic, extension = [], []
    for code in range(0x80):
        if code == _ESCAPE:
            continue
        basic.append(decode(bytes([code]))[0])
        try:
            extension.append(decode(bytes([_ESCAPE, code]))[0])
        except UnicodeDecodeError:
            pass
    return "".join(basic), "".join(extension)


GSM_BASIC, GSM_EXTENSION = _gsm_alphabet()
_NOT_GSM = re.compile("[^" + re.escape(GSM_BASIC + GSM_EXTENSION) + "]")
_EXTENSION = re.compile("[" + re.escape(GSM_EXTENSION) + "]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_EXTENSION_SET = frozenset(GSM_EXTENSION)


@dataclass(frozen=True)
class SmsParts:
    encoding: str  # GSM7 or UCS2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int

    @property
    def encoding_label(self) -> str:
        return ENCODING_LABELS[self.encoding]


ENCODING_LABELS = {GSM7: "GSM-7", UCS2: "UCS-2"}


def sms_parts(text: str) -> SmsParts:
    """The encoding, length in its units and number of parts of ``text`` (at least one part)."""
    if _NOT_GSM.search(text) is None:
        double = len(_EXTENSION.findall(text))
        units = len(text) + double
        return SmsParts(GSM7, units, _count(units, GSM7, text, _EXTENSION_SET.__contains__ if double else None))
    double = len(_ASTRAL.findall(text))
    units = len(text) + double
    return SmsParts(UCS2, units, _count(units, UCS2, text, _is_astral if double else None))


def _is_astral(character: str) -> bool:
    return ord(character) > 0xFFFF


def _count(units: int, encoding: str, text: str, is_double) -> int:
    if units <= SINGLE_PART_UNITS[encoding]:
        return 1
    per_part = MULTIPART_UNITS[encoding]
    if is_double is None:  # every character one unit: plain division
        return -(-units // per_part)
    parts, used = 1, 0
    for character in text:
        size = 2 if is_double(character) else 1
        if used + size > per_part:  # a two-unit character is never split between parts
            parts, used = parts + 1, 0
        used += size
    return parts


def sms_max_units(encoding: str, max_parts: int) -> int:
    """How many units ``max_parts`` parts hold (1530 GSM-7 septets or 670 UCS-2 units for 10)."""
    if max_parts <= 1:
        return SINGLE_PART_UNITS[encoding]
    return MULTIPART_UNITS[encoding] * max_parts
