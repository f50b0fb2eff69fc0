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
from array import array
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
# A GSM text as its septets: one "s" per default-alphabet character, ESC + "s" per extension character.
_SEPTETS = str.maketrans({**dict.fromkeys(GSM_BASIC, "s"), **dict.fromkeys(GSM_EXTENSION, "\x1bs")})
_ESC = "\x1b"


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
    """The encoding, length in its units and number of parts of ``text`` (at least one part).

    Linear and in C (a translation or an encoding, then one step per part), so a 1530-character text
    costs the HANDLER a few microseconds.
    """
    if _NOT_GSM.search(text) is None:
        septets = text.translate(_SEPTETS)
        return SmsParts(GSM7, len(septets), _count(septets, GSM7, _is_escape))
    units = array("H", text.encode("utf-16-le"))
    return SmsParts(UCS2, len(units), _count(units, UCS2, _is_high_surrogate))


def _is_escape(septet: str) -> bool:
    return septet == _ESC


def _is_high_surrogate(unit: int) -> bool:
    return 0xD800 <= unit <= 0xDBFF


def _count(units, encoding: str, opens_a_pair) -> int:
    """Parts of ``units``: full parts, except that a part never ends on the first unit of a pair."""
    total = len(units)
    if total <= SINGLE_PART_UNITS[encoding]:
        return 1
    per_part = MULTIPART_UNITS[encoding]
    parts, start = 0, 0
    while start < total:
        end = min(start + per_part, total)
        if end < total and opens_a_pair(units[end - 1]):  # its second unit would start the next part
            end -= 1
        parts, start = parts + 1, end
    return parts


def sms_max_units(encoding: str, max_parts: int) -> int:
    """How many units ``max_parts`` parts hold (1530 GSM-7 septets or 670 UCS-2 units for 10)."""
    if max_parts <= 1:
        return SINGLE_PART_UNITS[encoding]
    return MULTIPART_UNITS[encoding] * max_parts
