"""Search words marked in a body (dashboard.highlight): the matches marked, everything else literal text."""

from __future__ import annotations

from dashboard.highlight import marked, matching_lines, search_words


def test_matching_lines_are_found_case_insensitively_and_cut() -> None:
    body = "first line\n  Ada LOVELACE here\nnothing\n" + "x" * 400 + " lovelace " + "y" * 400
    hits = matching_lines(body, ["lovelace"])
    assert [n for n, _ in hits] == [2, 4]
    assert hits[0][1] == "Ada LOVELACE here" and hits[1][1].startswith("…") and hits[1][1].endswith("…")
    assert len(hits[1][1]) <= 162


def test_a_body_full_of_markup_stays_text() -> None:
    words = search_words("cust")
    text = marked("**cust** :red[cust] <b>cust</b> [a](http://evil.example)", words)
    assert text == ("\\*\\*:orange-background[cust]\\*\\* \\:red\\[:orange-background[cust]\\] "
                    "\\<b\\>:orange-background[cust]\\</b\\> \\[a\\]\\(http\\:/"
                    "/evil\\.example\\)")
    assert search_words("a bb bb ccc") == ["bb", "ccc"]
