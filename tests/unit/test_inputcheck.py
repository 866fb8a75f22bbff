"""inputcheck: every bad value becomes a ValidationError naming the JSON pointer."""

from __future__ import annotations

import datetime
import hashlib
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tapdb_core import inputcheck, users
from tapdb_core.errors import ValidationError


def _deep(levels: int, leaf: object = "x") -> object:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def _path_of(call: Callable[[], object]) -> str:
    with pytest.raises(ValidationError) as caught:
        call()
    (violation,) = caught.value.violations
    assert violation.path in str(caught.value)
    return violation.path


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("a\x00b", "NUL"),
        ("\ud800", "surrogate"),
        ("ok\udfffok", "surrogate"),
        (b"bytes", "must be a string"),
        (None, "must be a string"),
        ("   ", "empty"),
    ],
)
def test_check_text_refuses_what_postgresql_cannot_store(bad: object, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle) as caught:
        inputcheck.check_text("name", bad)
    assert caught.value.violations[0].path == "/name"


def test_check_text_accepts_any_other_unicode() -> None:
    for good in ("o'brien", "Ünïcødé ✓", "\U0001f9ea tube", "tab\tand\nnewline", "٣"):
        assert inputcheck.check_text("/name", good) == good
    assert inputcheck.check_text("/x", "", required=False) == ""


def test_message_never_repeats_the_value() -> None:
    secret = "hunter2\x00"
    with pytest.raises(ValidationError) as caught:
        inputcheck.check_text("/password", secret)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "pointer", "needle"),
    [
        ({"notes": "a\x00"}, "/properties/notes", "NUL"),
        ({"notes": ["ok", "\ud800"]}, "/properties/notes/1", "surrogate"),
        ({"v": float("nan")}, "/properties/v", "nan is not a JSON number"),
        ({"v": float("inf")}, "/properties/v", "inf is not a JSON number"),
        ({"v": -float("inf")}, "/properties/v", "not a JSON number"),
        ({"v": {1, 2}}, "/properties/v", "set is not a JSON value"),
        ({"v": b"x"}, "/properties/v", "bytes is not a JSON value"),
        ({"v": datetime.datetime(2024, 1, 1)}, "/properties/v", "datetime is not a JSON value"),
        ({"v": object()}, "/properties/v", "object is not a JSON value"),
        ({"v": 10**5000}, "/properties/v", "too large"),
        ({"a/b": {"~": None, "x": {1}}}, "/properties/a~1b/x", "set"),
        ({1: "int key"}, "/properties", "keys must be strings"),
        ({"k\x00": 1}, "/properties", "object key contains a NUL"),
    ],
)
def test_check_json_reports_the_pointer_of_the_bad_value(
    value: object, pointer: str, needle: str
) -> None:
    with pytest.raises(ValidationError, match=needle) as caught:
        inputcheck.check_json("/properties", value)
    assert caught.value.violations[0].path == pointer


def test_first_bad_value_in_document_order_is_reported() -> None:
    value = {"a": [1, 2, {"b": float("nan")}], "c": {3}}
    assert _path_of(lambda: inputcheck.check_json("/p", value)) == "/p/a/2/b"


def test_depth_5000_is_refused_without_recursion_error() -> None:
    deep = _deep(5000)
    assert 5000 > sys.getrecursionlimit() // 2
    path = _path_of(lambda: inputcheck.check_json("/properties", {"notes": deep}))
    assert path.startswith("/properties/notes/a/a")
    deep_list: Any = "x"
    for _ in range(5000):
        deep_list = [deep_list]
    with pytest.raises(ValidationError, match="nested deeper than"):
        inputcheck.check_json("/json_addl", deep_list)
    inputcheck.check_json("/ok", _deep(inputcheck.MAX_JSON_DEPTH - 1))


def test_plain_json_passes() -> None:
    inputcheck.check_json(
        "/p",
        {"s": "x", "i": -3, "f": 1.5, "b": True, "n": None, "l": [1, (2, 3)], "big": 10**100},
    )


@pytest.mark.parametrize(
    ("value", "needle"),
    [(-1, ">= 0"), (1.5, "integer"), (True, "integer"), ("3", "integer")],
)
def test_check_non_negative(value: object, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle) as caught:
        inputcheck.check_non_negative("limit", value)
    assert caught.value.violations[0].path == "/limit"
    assert inputcheck.check_non_negative("limit", None) is None
    assert inputcheck.check_non_negative("limit", 0) == 0


def test_checked_rows_are_lazy_and_name_the_row() -> None:
    consumed: list[int] = []

    def rows() -> Any:
        for i, row in enumerate(["n0", ("n1", None), ("n2", {"x": 1}), None]):
            consumed.append(i)
            yield row

    checked = inputcheck.checked_rows(rows())
    assert consumed == []
    assert [next(checked), next(checked), next(checked)] == ["n0", ("n1", None), ("n2", {"x": 1})]
    assert consumed == [0, 1, 2]
    with pytest.raises(ValidationError, match="/rows/3"):
        next(checked)
    with pytest.raises(ValidationError) as caught:
        list(inputcheck.checked_rows(["a", ("b", {"v": float("nan")}), None]))
    assert caught.value.violations[0].path == "/rows/1/properties/v"
    assert _path_of(lambda: list(inputcheck.checked_rows(["a", None]))) == "/rows/1"
    assert _path_of(lambda: list(inputcheck.checked_rows([(None, {})]))) == "/rows/0/name"
    assert _path_of(lambda: list(inputcheck.checked_rows([("a", [1])]))) == "/rows/0/properties"
    assert _path_of(lambda: list(inputcheck.checked_rows([("a",)]))) == "/rows/0"


def test_text_list_refuses_a_bare_string() -> None:
    assert _path_of(lambda: inputcheck.check_text_list("types", "contains")) == "/types"
    assert _path_of(lambda: inputcheck.check_text_list("types", ["a", "\x00"])) == "/types/1"


def test_check_password_always_runs_exactly_one_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(kwargs["n"])
        return real(*args, **kwargs)

    stored = users.hash_password("right")
    monkeypatch.setattr(hashlib, "scrypt", counting)
    for password, stored_hash, expected in (
        ("right", stored, True),
        ("wrong", stored, False),
        ("", stored, False),
        ("right", None, False),
        ("right", "", False),
        ("right", "scrypt$garbage", False),
        ("right", "bcrypt$1$2$3$aa$bb", False),
    ):
        calls.clear()
        assert users.check_password(password, stored_hash) is expected
        assert calls == [2**14], (password, stored_hash)


def test_unusual_containers_take_the_slow_path_and_pass() -> None:
    import types

    inputcheck.check_json("/p", {"t": (1, "x"), "m": types.MappingProxyType({"k": [None]})})
    with pytest.raises(ValidationError) as caught:
        inputcheck.check_json("/p", {"m": types.MappingProxyType({"k": ("ok", float("nan"))})})
    assert caught.value.violations[0].path == "/p/m/k/1"
