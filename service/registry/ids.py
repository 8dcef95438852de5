"""Opaque resource ids: a type prefix and a random body."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

WORKFLOW = "wf_"
BLOCK = "blk_"
TEST = "wfnodetest_"
RUN = "wftestrun_"
RESULT = "wfnodetestrun_"
ASSERTION = "assert_"
DRAFT = "draft_"
ORGANISATION = "org_"
API_KEY = "key_"


def new_id(prefix: str, length: int = 22) -> str:
    """A fresh id: `prefix` followed by `length` random base62 characters (~131 bits)."""
    number = int.from_bytes(secrets.token_bytes(length))
    digits = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return prefix + "".join(digits)
