"""common.encryption.keyed_hash keeps the keyed HMAC of each (key, purpose) ready: its hashes must stay the
ones stored in the blind indexes (a one-shot HMAC of purpose, NUL, value) and follow SECRET_INDEX_KEY."""

import hashlib
import hmac

import pytest
from django.core.exceptions import ImproperlyConfigured

from common.encryption import keyed_hash, keyed_hash_matches

VALUES = ["a", "Zx3-_token_urlsafe_43_characters_long_abcdef", "51856fefc120afa4b628cc82d3935cce", "é€ 😀", "x" * 500]
PURPOSES = ["url-secret", "application-token", "", "other purpose"]


def one_shot(key: str, purpose: str, value: str) -> str:
    """How every stored hash was made (before keyed_hash kept its HMAC ready)."""
    return hmac.digest(key.encode(), purpose.encode() + b"\0" + value.encode(), hashlib.sha256).hex()


@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize("value", VALUES)
def test_keyed_hash_is_the_one_shot_hmac_of_purpose_nul_value(settings, purpose, value):
    assert keyed_hash(value, purpose=purpose) == one_shot(settings.SECRET_INDEX_KEY, purpose, value)


def test_keyed_hash_gives_the_same_answer_every_time_and_differs_by_purpose_and_value(settings):
    first = keyed_hash("secret", purpose="url-secret")
    assert [keyed_hash("secret", purpose="url-secret") for _ in range(3)] == [first] * 3  # the kept HMAC is unchanged
    assert keyed_hash("secret", purpose="application-token") != first
    assert keyed_hash("secret2", purpose="url-secret") != first
    assert keyed_hash("", purpose="url-secret") == ""
    assert keyed_hash_matches(first, "secret", purpose="url-secret")
    assert not keyed_hash_matches(first, "secret", purpose="application-token")


def test_a_changed_secret_index_key_changes_the_hash(settings):
    before = keyed_hash("secret", purpose="url-secret")
    settings.SECRET_INDEX_KEY = "another-secret-index-key-0123456789abcdefghij"
    after = keyed_hash("secret", purpose="url-secret")
    assert after != before
    assert after == one_shot("another-secret-index-key-0123456789abcdefghij", "url-secret", "secret")


@pytest.mark.parametrize("key", ["", "too-short"])
def test_an_unusable_secret_index_key_is_refused(settings, key):
    settings.SECRET_INDEX_KEY = key
    with pytest.raises(ImproperlyConfigured, match="SECRET_INDEX_KEY"):
        keyed_hash("secret", purpose="url-secret")
