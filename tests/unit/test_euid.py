from __future__ import annotations

import meridian_euid
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapdb_core import euid
from tapdb_core.codes import TemplateCode, version_sort_key
from tapdb_core.errors import EUIDError, TemplateCodeError


def test_known_vector() -> None:
    assert euid.encode("TX", 1) == "TX-1C"
    assert euid.parse("TX-1C") == euid.ParsedEUID(prefix="TX", seq=1)


@given(st.text(alphabet=euid.ALPHABET, min_size=1, max_size=20))
def test_check_character_matches_meridian(payload: str) -> None:
    assert euid.check_character(payload) == meridian_euid.compute_check_character(payload)


@pytest.mark.parametrize("prefix", ["TUS", "tx", "A", "ABCD", "IO", "GL", "", "T1"])
def test_bad_prefix_names_the_value(prefix: str) -> None:
    with pytest.raises(EUIDError, match="invalid EUID prefix"):
        euid.check_prefix(prefix)


@pytest.mark.parametrize("bad", ["TX-1D", "TX1C", " TX-1C", "tx-1c", "TX-0C", "TX-1CC-"])
def test_parse_rejects_with_value_in_message(bad: str) -> None:
    with pytest.raises(EUIDError) as err:
        euid.parse(bad)
    assert repr(bad) in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("container/plate/fixed-plate-96/1.0/", "container/plate/fixed-plate-96/1.0/"),
        ("container/plate/fixed-plate-96/1.0", "container/plate/fixed-plate-96/1.0/"),
        ("/a/b/c/*", "a/b/c/*/"),
    ],
)
def test_template_code_round_trip(text: str, canonical: str) -> None:
    assert str(TemplateCode.parse(text)) == canonical


@pytest.mark.parametrize("bad", ["a/b/c", "a/b/c/d/e", "a//c/d", "", "a/b c/c/d"])
def test_template_code_rejects(bad: str) -> None:
    with pytest.raises(TemplateCodeError, match="invalid template code"):
        TemplateCode.parse(bad)


def test_versions_compare_as_numbers() -> None:
    assert max(["1.9", "1.10", "1.2"], key=version_sort_key) == "1.10"
