"""Field checks shared by the API's request models.

Each check takes whatever ``json.loads`` produced (``None``, numbers, lists, dicts, huge or odd
strings) and answers a list of ``FieldProblem`` (empty when the value is fine) instead of raising,
so one request can report every problem at once in the contract's ``details`` list. Problems
never echo the rejected value: it may be huge, or a phone number we should not copy into logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from chalicelib.errors import FieldProblem

# ASCII so that \d does not accept other scripts' digits (Arabic-Indic, fullwidth), which SNS and Telnyx
# would reject only at send time, after the job was accepted.
E164 = re.compile(r"^\+[1-9]\d{1,14}$", re.ASCII)

PHONE_EXAMPLE = "+15551234567"

# C0 controls and DEL, except the whitespace a message may legitimately carry (tab, LF, CR).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Lone surrogates survive json.loads ("\ud800") but cannot be encoded to UTF-8, so a provider
# call would fail much later with a UnicodeEncodeError.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def check_phone(value: object, field: str) -> list[FieldProblem]:
    """An E.164 number: "+", a country code that does not start with 0, at most 15 digits."""
    if not isinstance(value, str):
        return [FieldProblem(field, f"must be a string holding an E.164 phone number such as {PHONE_EXAMPLE}")]
    # fullmatch, not match: with "$" alone, "+15551234567\n" would pass.
    if len(value) > 16 or E164.fullmatch(value) is None:
        return [
            FieldProblem(
                field,
                f"must be an E.164 phone number such as {PHONE_EXAMPLE}: a '+', the country code "
                "and the number, 15 digits at most, no spaces or punctuation",
            )
        ]
    return []


def check_text(value: object, field: str, min_len: int, max_len: int) -> list[FieldProblem]:
    """A human-readable string of min_len..max_len characters (Unicode code points).

    Blank text (only whitespace) counts as empty when ``min_len`` is at least 1: a message of
    spaces would be sent and billed but tell the recipient nothing.
    """
    if min_len < 0 or max_len < min_len:
        raise ValueError(f"bad length bounds for {field}: {min_len}..{max_len}")
    if not isinstance(value, str):
        return [FieldProblem(field, f"must be a string of {min_len} to {max_len} characters")]
    # Length first and alone: a huge string is not worth scanning any further.
    if len(value) > max_len:
        return [FieldProblem(field, f"must be at most {max_len} characters long (it has {len(value)})")]
    if len(value) < min_len:
        return [FieldProblem(field, f"must be at least {min_len} characters long (it has {len(value)})")]
    problems: list[FieldProblem] = []
    if min_len >= 1 and not value.strip():
        problems.append(FieldProblem(field, "must not be blank"))
    if _CONTROL.search(value):
        problems.append(
            FieldProblem(field, "must not contain control characters (only tab and line breaks are allowed)")
        )
    if _SURROGATE.search(value):
        problems.append(FieldProblem(field, "must be valid Unicode text (it holds an unpaired surrogate)"))
    return problems


def check_choice(value: object, field: str, choices: Iterable[str]) -> list[FieldProblem]:
    """One of a fixed set of strings; the problem lists the choices in the order given."""
    allowed = tuple(choices)
    # isinstance first: a list or dict is unhashable and must not reach an ``in`` on a set.
    if isinstance(value, str) and value in allowed:
        return []
    return [FieldProblem(field, "must be one of: " + ", ".join(allowed))]
