"""The web book's machinery on a small book built here (tests/sample_book.py): launch buttons
appear with a repository and not without, and the browser checks of tests/test_browser.py pass
on a page whose widgets are `bufferbook.widget_states.state_picker`s, which proves those checks
work (each control is moved through every combination, the shown state changes each time, every
figure state has alt text) whatever the chapters hold today.

The sample book is built once for this module, with repository.url set to SAMPLE_REPO; the
repository's own book (built by `make book`) is the case without one when its _config.yml names
none.
"""
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import browser_checks as bc
from sample_book import SAMPLE_HUB, build_sample_book
from test_browser import BOOK, HTML, run_all_checks

SAMPLE_REPO = "https://github.com/example-org/sample-repo"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    dest = tmp_path_factory.mktemp("sample-book") / "book"
    return dest, build_sample_book(dest, repository_url=SAMPLE_REPO)


def _links(html_file):
    return re.findall(r'href="([^"]+)"', Path(html_file).read_text(encoding="utf8"))


def test_with_a_repository_notebook_pages_get_launch_buttons_and_the_repository_link(sample):
    _, html = sample
    links = _links(html / "widget_sample.html")
    binder = [h for h in links if h.startswith("https://mybinder.org/")]
    colab = [h for h in links if h.startswith("https://colab.research.google.com/")]
    hub = [h for h in links if h.startswith(SAMPLE_HUB)]
    assert binder == ["https://mybinder.org/v2/gh/example-org/sample-repo/main"
                      "?urlpath=lab/tree/widget_sample.ipynb"]
    assert colab == ["https://colab.research.google.com/github/example-org/sample-repo/blob/main/"
                     "widget_sample.ipynb"]
    [hub_link] = hub
    query = parse_qs(urlsplit(hub_link).query)
    assert query["repo"] == [SAMPLE_REPO] and query["branch"] == ["main"]
    assert SAMPLE_REPO in links  # the repository button
    assert "thebe" not in (html / "widget_sample.html").read_text(encoding="utf8").lower()


def test_without_a_repository_there_is_no_launch_button_and_no_repository_link():
    if bc.repository_url(BOOK):
        pytest.skip("this book's _config.yml names a repository (the sample book covers it)")
    pages = sorted(HTML.glob("chapters/*.html")) + sorted(HTML.glob("exercises/*/*.html"))
    if not pages:
        pytest.fail(f"{HTML} holds no chapter page: build the book first with `make book`")
    for page in pages:
        text = page.read_text(encoding="utf8")
        assert "dropdown-launch-buttons" not in text, page
        assert "btn-source-repository-button" not in text, page
        assert "x-thebe-config" not in text and "binder-examples" not in text, page


def test_browser_checks_pass_on_state_picker_widgets_and_catch_a_callback_widget(sample,
                                                                                  request):
    book, html = sample
    report = run_all_checks(book, html, request, prefix="sample-")
    problems = [f"[{name}] {p}" for name, found in report["checks"].items() for p in found]
    # The callback page's dropdown is the only problem: it changes nothing without a kernel.
    assert len(problems) == 1 and problems[0].startswith(
        "[check_widgets_interactive] widget_callback.html widget 1: control select 'letter' "
        "never changes the visible output"), "\n".join(problems)

    page = next(p for p in report["pages"] if p["page"] == "widget_sample.html")
    widgets = page["widgets"]
    assert [[(c["kind"], c["label"]) for c in w["controls"]] for w in widgets] == [
        [("slider", "size n"), ("select", "mode")], [("toggle", "slope"), ("select", "dtype")]]
    assert all(w["mode"] == "every combination" and not w["never_changed"] for w in widgets)
    # Every combination visited and each showed its own state: 3 sizes x 2 modes, 2 x 2.
    assert [(w["combinations"], w["distinct_outputs"]) for w in widgets] == [(6, 6), (4, 4)]
    assert page["stored_html_states"] >= 10 and not page["stored_states_without_alt"]
    assert page["math"] and not page["unrendered_math"]
    # HTML in a description, cleaned by scripts/web/sanitize-html-lite.js.
    assert '<b>size</b> n' in page["widget_labels"], page["widget_labels"]
