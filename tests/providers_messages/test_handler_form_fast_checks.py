"""The cheaper spellings of handler_form's checks answer exactly what the regexes they stand for answer."""

import itertools

import pytest

from providers import handler_form

PIECES = [
    "a",
    "%",
    "%0",
    "%1",
    "%7",
    "f",
    "F",
    "0",
    "b",
    "\t",
    "\n",
    "\x00",
    "\x1f",
    "\x7f",
    " ",
    "é",
    "€",
    "😀",
    "\x85",
]
PIECES += ["\u2028", "\ud800", "+", "="]


def bodies():
    yield ""
    for size in (1, 2, 3):
        yield from ("".join(combination) for combination in itertools.product(PIECES, repeat=size))


def test_the_body_control_check_is_the_body_regex():
    for body in bodies():
        expected = handler_form._CONTROL_IN_BODY.search(body) is not None
        assert handler_form._body_has_control(body) is expected, repr(body)
        if "\ud800" not in body:
            assert handler_form._body_has_control(body, body.encode()) is expected, repr(body)


@pytest.mark.parametrize(
    "value", ["0", "1742895600", "1" * 12, "1" * 13, "١٧٤٢", "²", "12a", " 12", "12\n", "-1", "+1", "1_000"]
)
def test_the_timestamp_check_is_its_pattern(value):
    if handler_form.TS_PATTERN.fullmatch(value):
        assert handler_form._timestamp(value) is not None
    else:
        with pytest.raises(handler_form.HandlerFormError):
            handler_form._timestamp(value)


@pytest.mark.parametrize("module_id", sorted(handler_form._USUAL_MODULE_IDS))
def test_the_usual_module_ids_match_the_pattern(module_id):
    assert handler_form.MODULE_ID_PATTERN.fullmatch(module_id)
