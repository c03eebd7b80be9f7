"""Validation of SMS request fields: phone numbers, texts and choices.

Every check must take any JSON value without raising, say what is wrong in a sentence a client
developer can act on, and never echo the rejected value back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.errors import FieldProblem
from chalicelib.validation import E164, check_choice, check_phone, check_text

SEVERITIES = ("critical", "warning", "info")

# Every kind of JSON value, and then some that json.loads can produce from hostile input.
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    15551234567,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    "",
    " ",
    [],
    ["+15551234567"],
    {},
    {"phone_number": "+15551234567"},
    "\x00",
    "+1555\x001234567",
    "\ud800",
    "x" * 5_000_000,
    "+" + "1" * 5_000_000,
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


def only_problem(problems: list[FieldProblem], field: str) -> str:
    assert len(problems) == 1, problems
    assert problems[0].field == field
    return problems[0].problem


# -- phone numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["+15551234567", "+442071838750", "+12", "+123456789012345", "+8613800138000", "+919876543210"],
)
def test_e164_numbers_are_accepted(number: str) -> None:
    assert check_phone(number, "phone_number") == []


@pytest.mark.parametrize(
    "number",
    [
        "",
        "+",
        "+1",  # a country code alone
        "15551234567",  # no plus
        "+05551234567",  # country codes never start with 0
        "+1234567890123456",  # 16 digits
        "+1 555 123 4567",
        "+1-555-123-4567",
        "+1(555)1234567",
        " +15551234567",
        "+15551234567 ",
        "+15551234567\n",  # "$" alone would let this through
        "++15551234567",
        "+1555123456a",
        "+1\u0665\u0665\u0665\u0661\u0662\u0663\u0664\u0665\u0666\u0667",  # Arabic-Indic digits
        "+\uff11\uff15\uff15\uff15\uff11\uff12\uff13\uff14\uff15\uff16\uff17",  # fullwidth digits
        "\uff0b15551234567",  # fullwidth plus
        "tel:+15551234567",
    ],
)
def test_malformed_numbers_are_rejected_with_an_example(number: str) -> None:
    problem = only_problem(check_phone(number, "phone_number"), "phone_number")
    assert "E.164" in problem and "+15551234567" in problem


@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: f"{type(v).__name__}:{str(v)[:20]!r}")
def test_phone_check_takes_any_value_without_raising(value: Any) -> None:
    problem = only_problem(check_phone(value, "contact.phone_number"), "contact.phone_number")
    assert "E.164" in problem


def test_phone_problem_does_not_echo_the_value() -> None:
    problem = only_problem(check_phone("+1555-SECRET-9", "phone_number"), "phone_number")
    assert "SECRET" not in problem


def test_e164_pattern_is_the_contract_pattern_in_ascii_mode() -> None:
    assert E164.pattern == r"^\+[1-9]\d{1,14}$"
    assert E164.match("+1\u0665\u0665\u0665") is None


# -- texts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["x", "Disk full on db-1", "x" * 1600, "line one\nline two\r\n\tindented", "Привет 👋 — ✓", " padded "],
)
def test_texts_within_bounds_are_accepted(text: str) -> None:
    assert check_text(text, "message", 1, 1600) == []


def test_text_length_counts_characters_not_bytes() -> None:
    assert check_text("é" * 1600, "message", 1, 1600) == []  # 3200 bytes in UTF-8
    assert check_text("👋" * 1600, "message", 1, 1600) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "at least 1"),
        ("x" * 1601, "at most 1600"),
        ("x" * 10_000_000, "at most 1600"),
        ("   \n\t ", "blank"),
        ("bad\x00byte", "control characters"),
        ("esc\x1b[31m", "control characters"),
        ("del\x7f", "control characters"),
        ("half a pair \ud83d", "unpaired surrogate"),
    ],
    ids=["empty", "one-too-long", "huge", "blank", "nul", "escape", "del", "surrogate"],
)
def test_bad_texts_are_rejected_with_a_reason(text: str, words: str) -> None:
    problem = only_problem(check_text(text, "message", 1, 1600), "message")
    assert words in problem
    if text.strip():
        assert text[:20] not in problem


def test_text_reports_every_problem_at_once() -> None:
    problems = check_text("\x00\ud800", "message", 1, 10)
    assert {p.problem.split(" (")[0] for p in problems} == {
        "must not contain control characters",
        "must be valid Unicode text",
    }


def test_text_with_zero_minimum_accepts_empty() -> None:
    assert check_text("", "subject", 0, 10) == []


@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: f"{type(v).__name__}:{str(v)[:20]!r}")
def test_text_check_takes_any_value_without_raising(value: Any) -> None:
    problems = check_text(value, "message", 1, 1600)
    assert all(isinstance(p, FieldProblem) and p.field == "message" for p in problems)
    if not isinstance(value, str):
        assert "must be a string of 1 to 1600 characters" in only_problem(problems, "message")


def test_text_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        check_text("x", "message", 5, 1)
    with pytest.raises(ValueError):
        check_text("x", "message", -1, 1)


# -- choices -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", SEVERITIES)
def test_known_choices_are_accepted(value: str) -> None:
    assert check_choice(value, "severity", SEVERITIES) == []


@pytest.mark.parametrize("value", ["CRITICAL", "critical ", "", "fatal", *ODD_VALUES])
def test_unknown_choices_list_the_allowed_values_in_order(value: Any) -> None:
    problem = only_problem(check_choice(value, "severity", SEVERITIES), "severity")
    assert problem == "must be one of: critical, warning, info"


def test_choices_may_be_any_iterable() -> None:
    assert check_choice("b", "kind", (c for c in "abc")) == []
    assert check_choice("z", "kind", iter(["a", "b"])) == [FieldProblem("kind", "must be one of: a, b")]


# -- any JSON at all -----------------------------------------------------------------------------


@given(json_values)
def test_every_check_takes_arbitrary_json(value: Any) -> None:
    # GIVEN whatever a client could send WHEN checked THEN a list of problems, never an exception
    for problems in (
        check_phone(value, "f"),
        check_text(value, "f", 1, 1600),
        check_choice(value, "f", SEVERITIES),
    ):
        assert isinstance(problems, list)
        assert all(isinstance(p, FieldProblem) and p.field == "f" and p.problem for p in problems)


@given(st.text())
def test_accepted_phone_numbers_are_exactly_the_e164_ones(value: str) -> None:
    accepted = check_phone(value, "f") == []
    plausible = value.startswith("+") and value[1:].isascii() and value[1:].isdigit()
    assert accepted == (plausible and value[1] != "0" and 2 <= len(value) - 1 <= 15)


def test_problems_serialise_to_json() -> None:
    problems = check_text("\x00", "message", 1, 1600) + check_phone(None, "phone_number")
    json.dumps([{"field": p.field, "problem": p.problem} for p in problems])
