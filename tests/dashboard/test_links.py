"""Links that inject (#11 item 2): values from a URL or from MoeGo reach Markdown elements only as text.

AppTest gives each element's Markdown source; :func:`markup_in` finds what Markdown would make of it beyond
text (links, images, HTML, Streamlit's colour and icon directives). The browser test renders a crafted link
in Chromium and checks that no link appears and no outside image is fetched.
"""

from __future__ import annotations

import re
import sqlite3

import pytest

from dashboard.safe import code, md

from tests.seed import ALPHA, Seed

from .test_app import everything_shown, no_exception, read

PHISHING = "x` Your session expired: [log in here](https://evil.example/login) `y"  # closes the old code span
IMAGE = "![pixel](http://127.0.0.1:9/pixel.png)"
CRAFTED = [PHISHING, IMAGE, "<img src=http://127.0.0.1:9/p.png>", ":red[**ALERT**] :material/warning: $x^2$",
           "`` ` ``code` break-out ` [a](https://evil.example)", "line\n\n# Heading\n- item [a](https://evil.example)",
           "www.evil.example and https://evil.example and mail@evil.example"]


def markup_in(markdown: str) -> list[str]:
    """What in ``markdown`` is more than text: links, images, autolinks, HTML, directives, math."""
    text = re.sub(r"(?<!\\)(`+)(?!`)(.+?)(?<!`)\1(?!`)", "", markdown)  # code spans show their content literally
    text = re.sub(r"\\[!-/:-@\[-`{-~]", "", text)  # backslash escapes stand for the character itself
    found = re.findall(r"\]\(|!\[|<[a-zA-Z/]|https?:|www\.|@[a-z]|:[a-z]+\[|:material/|\$", text)
    return found + (["block"] if "\n" in markdown else [])


@pytest.mark.parametrize("value", CRAFTED)
def test_a_value_is_text_in_markdown(value: str) -> None:
    one_line = re.sub(r"\n+", " ", value)
    assert markup_in(md(value)) == [] and read(md(value)) == one_line
    spanned = code(value)
    fence = re.match("`+", spanned).group(0)
    assert markup_in(spanned) == [] and spanned.endswith(fence) and fence not in spanned[len(fence):-len(fence)]
    inner = spanned[len(fence):-len(fence)]
    assert inner in (one_line, f" {one_line} ")


def test_a_crafted_delivery_link_is_shown_as_text(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": PHISHING})
    no_exception(at)
    [warning] = [w.value for w in at.warning]
    assert markup_in(warning) == []
    assert warning == f"No delivery {code(PHISHING)} in the archive."
    for kind in ("markdown", "caption", "error", "info", "success", "subheader", "title"):
        for element in at.get(kind):
            assert "evil.example" not in str(element.value) or markup_in(str(element.value)) == []


def test_crafted_values_from_moego_are_shown_as_text(run_app, live_seed: Seed) -> None:
    """An entry whose ids, URL and error MoeGo sent crafted: the detail view and the confirmation stay text."""
    conn = sqlite3.connect(live_seed.path)
    with conn:
        conn.execute("UPDATE deliveries SET event_id = ?, request_url = ?, error = ?, event_type = ? WHERE id = 'dlv_r2'",
                     (IMAGE, PHISHING, PHISHING, ":red[PET_CREATED]"))
    conn.close()
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_r2"}, api_key="key")
    no_exception(at)
    at.button(key="redeliver").click().run()
    no_exception(at)
    [confirm] = [w.value for w in at.warning]
    assert markup_in(confirm) == [], confirm
    assert read(confirm).startswith("Ask MoeGo to send event ")
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "subheader", "title"):
        for element in at.get(kind):
            value = str(element.value)
            if "evil.example" in value or "pixel" in value:
                assert markup_in(value) == [], value


def test_an_unknown_webhook_in_a_link_raises_no_alarm(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/archive_health.py", query={"webhook": ["wh_nope", PHISHING]})
    no_exception(at)
    assert [e.value for e in at.error] == []  # before: "**wh_nope**: 48.0 h not archived ..." for each made-up id
    assert [s.value for s in at.success][0].startswith("Nothing at risk")
    overview = run_app(live_seed.path, query={"webhook": "wh_nope"})
    no_exception(overview)
    assert not [w.value for w in overview.warning if "not archived" in w.value]
    assert "evil.example" not in everything_shown(at).replace(code(PHISHING), "")


def test_a_known_webhook_in_a_link_still_shows_its_risk(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/archive_health.py", query={"webhook": [ALPHA, "wh_nope"]})
    no_exception(at)
    risks = [read(e.value) for e in at.error]
    assert risks and all(r.startswith(f"**{ALPHA}**") for r in risks)


def test_the_detail_facts_table_shows_moego_values_as_text(run_app, live_seed: Seed) -> None:
    """st.table renders Markdown in its cells: the entry's error and URL there stay text."""
    conn = sqlite3.connect(live_seed.path)
    with conn:
        conn.execute("UPDATE deliveries SET request_url = ?, error = ? WHERE id = 'dlv_r2'", (IMAGE, PHISHING))
    conn.close()
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_r2"})
    no_exception(at)
    [facts] = [t.value for t in at.table]
    cells = dict(zip(facts.iloc[:, 0], facts.iloc[:, 1]))
    assert markup_in(cells["Error"]) == [] and read(cells["Error"]) == PHISHING
    assert markup_in(cells["Request URL"]) == [] and read(cells["Request URL"]) == IMAGE
