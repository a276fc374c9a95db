"""The LPM trie's bad-prefix message names the input once and says what is wrong."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bpfnb.errors import KeyTypeError
from bpfnb.map.kinds import lpm

VIEW = SimpleNamespace(name="rules", info=SimpleNamespace(key_size=8))


@pytest.mark.parametrize("text, why", [
    ("10.0.0.0/33", "the prefix length 33 is longer than the address (32 bits)"),
    ("2001:db8::/129", "the prefix length 129 is longer than the address (128 bits)"),
    ("bogus", "write it like '10.0.0.0/8' or '2001:db8::/32'"),
])
def test_bad_prefix_said_once(text, why):
    with pytest.raises(KeyTypeError) as e:
        lpm.parse(VIEW, text)
    assert str(e.value) == f"{text!r} is not an IP address or network: {why}"
    assert str(e.value).count(text) == 1
