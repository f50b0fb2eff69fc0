"""The PHP-style form parser the HANDLER and the install endpoint read Bitrix24's bodies with."""

import urllib.parse

import pytest
import qs_codec

from providers.php_form import PhpFormError, php_form_decode
from tests.providers_messages.conftest import bizproc_fields, crm_fields


def test_bitrix24_bodies_decode_as_the_qs_reference_decodes_them():
    """qs (a different implementation of the same PHP rules) is the reference for well-formed bodies."""
    fields = crm_fields(
        **{"bindings[1][OWNER_TYPE_ID]": "2", "bindings[1][OWNER_ID]": "7", "message_body": "Код: 1+1 & всё = 100%"}
    )
    for body in (
        urllib.parse.urlencode(fields),
        urllib.parse.urlencode(bizproc_fields()),
        urllib.parse.urlencode(fields, safe="[]"),
    ):
        assert php_form_decode(body) == qs_codec.decode(body)


def test_nested_keys_lists_and_appends():
    assert php_form_decode("a[0][x]=1&a[0][y]=2&a[1][x]=3&b[]=p&b[]=q&b[]=r") == {
        "a": [{"x": "1", "y": "2"}, {"x": "3"}],
        "b": ["p", "q", "r"],
    }


def test_percent_encoded_brackets_and_plus_as_space():
    assert php_form_decode("auth%5Bdomain%5D=a.b&text=a+b%2Bc") == {"auth": {"domain": "a.b"}, "text": "a b+c"}


def test_sparse_indexes_become_a_list_in_order_and_large_ones_stay_keys():
    assert php_form_decode("a[5]=z&a[2]=y") == {"a": ["y", "z"]}
    assert php_form_decode("a[201]=k", max_list_index=200) == {"a": {"201": "k"}}
    assert php_form_decode("a[" + "9" * 5000 + "]=k") == {"a": {"9" * 5000: "k"}}  # no 500 on a huge index
    assert php_form_decode("a[²]=1") == {"a": {"²": "1"}}  # a digit outside ASCII is not an index


def test_a_plain_field_given_twice_keeps_both_values():
    assert php_form_decode("code=a&code=b&code=c") == {"code": ["a", "b", "c"]}
    assert php_form_decode("a[x]=1&a[x]=2") == {"a": {"x": ["1", "2"]}}


@pytest.mark.parametrize("body", ["a=1&a[b]=2", "a[b]=2&a=1", "a[b]=1&a[b][c]=2", "a[b][c]=2&a[b]=1"])
def test_a_field_given_as_a_value_and_as_a_set_is_refused_naming_it(body):
    with pytest.raises(PhpFormError) as error:
        php_form_decode(body)
    assert error.value.field == "a"


def test_keys_deeper_than_the_depth_keep_the_rest_as_one_key():
    assert php_form_decode("a[b][c][d][e]=1", depth=3) == {"a": {"b": {"c": {"d": {"[e]": "1"}}}}}
    assert php_form_decode("a[b][c][d][e]=1", depth=3) == qs_codec.decode(
        "a[b][c][d][e]=1", qs_codec.DecodeOptions(depth=3)
    )


@pytest.mark.parametrize(
    "body,expected",
    [
        ("a[b=1", {"a[b": "1"}),
        ("a]b[=1", {"a]b[": "1"}),
        ("a[b]c=1", {"a[b]c": "1"}),
        ("[a]=1", {"[a]": "1"}),
        ("=1&&x&y=", {"x": "", "y": ""}),
    ],
)
def test_odd_keys_are_taken_literally_and_empty_ones_skipped(body, expected):
    assert php_form_decode(body) == expected


@pytest.mark.parametrize("body", ["a=%FF", "%C3=1", "a=%ED%A0%80"])
def test_bytes_that_are_not_utf8_are_refused(body):
    with pytest.raises(PhpFormError) as error:
        php_form_decode(body)
    assert error.value.not_utf8


def test_more_fields_than_allowed_are_refused_not_truncated():
    assert len(php_form_decode("&".join(f"f{n}=1" for n in range(10)), max_fields=10)) == 10
    with pytest.raises(PhpFormError):
        php_form_decode("&".join(f"f{n}=1" for n in range(11)), max_fields=10)
