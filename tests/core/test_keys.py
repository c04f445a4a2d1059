"""shared.core.keys: which ids may become table keys (and URL path segments), and how free text is escaped."""

from __future__ import annotations

import pytest

from shared.core.errors import InvalidInput
from shared.core.keys import MAX_ID_LENGTH, check_id, escape, join


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("org-1", "org-1", id="plain"),
        pytest.param("a b.c_d~e", "a b.c_d~e", id="space-dot-underscore-tilde"),
        pytest.param("3fa85f64-5717-4562-b3fc-2c963f66afa6", "3fa85f64-5717-4562-b3fc-2c963f66afa6", id="guid"),
        pytest.param(42, "42", id="int-becomes-string"),
        pytest.param("x" * MAX_ID_LENGTH, "x" * MAX_ID_LENGTH, id="exactly-max-length"),
        pytest.param("Projekt Ünïcode", "Projekt Ünïcode", id="unicode"),
        pytest.param("v1.2", "v1.2", id="dots-inside"),
        pytest.param(".hidden", ".hidden", id="leading-dot-with-text"),
        pytest.param("...a", "...a", id="dots-then-text"),
        pytest.param("%2e%2e", "%2e%2e", id="percent-encoded-dots-are-quoted-later"),
    ],
)
def test_usable_ids_are_returned_as_strings(value: object, expected: str) -> None:
    assert check_id(value, "project") == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("   ", "must not be empty", id="only-spaces"),
        pytest.param("\t", "must not be empty", id="only-tab"),
        pytest.param("x" * (MAX_ID_LENGTH + 1), "longer than 128", id="one-over-max-length"),
        pytest.param(None, "must be a string", id="none"),
        pytest.param(True, "must be a string", id="bool-is-not-an-int-here"),
        pytest.param(1.5, "must be a string", id="float"),
        pytest.param(["a"], "must be a string", id="list"),
        pytest.param("a/b", "not allowed", id="slash"),
        pytest.param("a\\b", "not allowed", id="backslash"),
        pytest.param("a#b", "not allowed", id="hash"),
        pytest.param("a?b", "not allowed", id="question-mark"),
        pytest.param("a|b", "not allowed", id="pipe-key-separator"),
        pytest.param("a\x00b", "not allowed", id="nul"),
        pytest.param("a\nb", "not allowed", id="newline"),
        pytest.param("a\x7fb", "not allowed", id="del"),
        pytest.param("a\x85b", "not allowed", id="c1-control"),
        pytest.param(".", "only of dots", id="single-dot"),
        pytest.param("..", "only of dots", id="double-dot"),
        pytest.param("...", "only of dots", id="three-dots"),
        pytest.param("." * MAX_ID_LENGTH, "only of dots", id="many-dots"),
    ],
)
def test_unusable_ids_are_400_naming_the_field(value: object, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_id(value, "project")
    assert caught.value.status == 400
    assert caught.value.field == "project"
    assert caught.value.message.startswith("project ")
    assert reason in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a@b.example", "a@b.example", id="email-unchanged"),
        pytest.param("a/b", "a%2Fb", id="slash"),
        pytest.param("a|b", "a%7Cb", id="separator"),
        pytest.param("100%", "100%25", id="percent-itself"),
        pytest.param("#?\\", "%23%3F%5C", id="hash-question-backslash"),
        pytest.param("a\nb", "a%0Ab", id="control"),
        pytest.param("\x85", "%C2%85", id="c1-control-utf8-bytes"),
    ],
)
def test_escape_makes_free_text_key_safe(text: str, expected: str) -> None:
    assert escape(text) == expected


def test_escape_is_reversible_in_principle() -> None:
    from urllib.parse import unquote

    for text in ["a/b|c#d?e\\f%g", "plain", "ünï/cøde"]:
        assert unquote(escape(text)) == text


def test_join_uses_the_pipe_separator() -> None:
    assert join("org", "group") == "org|group"
