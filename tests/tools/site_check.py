#!/usr/bin/env python
"""`make test-site`: every page of the built course website in headless Chromium.

It serves the site (``build/site`` by default) from a local HTTP server on 127.0.0.1 (a free
port; started and stopped here), opens every HTML page and requires

- no console error, no uncaught page error, no failed request (HTTP >= 400), and no request
  to any other host: scripts, styles, fonts and MathJax are served by the site itself;
- no MathJax error (``mjx-merror``) once MathJax has typeset the page;
- every image loaded (``naturalWidth > 0``) and, where it is shown, shown at its natural
  aspect ratio (within 2 %);
- every link to the site itself leads to a file of the site and, with a ``#fragment``, to an
  element with that id on the target page (links to other sites are counted, not followed:
  the check runs offline);
- the search page, asked for ``temperature``, lists at least one page.

Chromium is Debian's package, driven by playwright through ``executable_path``, as in
``tests/tools/browser_check.py``. Every wait has a bound. The last line says what was checked,
e.g. ``site: 47 pages, 131 images, 1915 internal links checked, search: 12 results,
errors: 0``.

Usage::

    python tests/tools/site_check.py                  # build/site
    python tests/tools/site_check.py DIR --screenshots SHOTS_DIR
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from browser_check import find_chromium

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "site"
PAGE_LOAD_S = 30
MATHJAX_S = 30
IMAGE_S = 10
SEARCH_S = 30
SEARCH_TERM = "temperature"
ASPECT_TOLERANCE = 0.02
#: Folders of the site that hold assets, not pages.
ASSET_DIRS = {"_static", "_sources", "_images", "_downloads"}


@dataclass
class Report:
    """What the check saw."""

    pages: int = 0
    images: int = 0
    links: int = 0
    external_links: int = 0
    search_results: int = 0
    problems: list[str] = field(default_factory=list)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A page closed while a font or script was still being sent: not the site's fault.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """An HTTP server for ``folder`` on 127.0.0.1 and a free port; yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _Ids(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key == "id" or (key == "name" and tag == "a"):
                self.ids.add(value or "")


@functools.cache
def page_ids(path: Path) -> frozenset[str]:
    """The ids (and ``<a name>``) of an HTML file: the anchors a link can point to."""
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def resolve(site: Path, base: str, url: str) -> tuple[Path | None, str]:
    """(the file of the site that ``url`` serves or None, its fragment)."""
    parts = urlsplit(url)
    path = unquote(parts.path[len(urlsplit(base).path) :])
    target = (site / path).resolve()
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file() or not target.is_relative_to(site.resolve()):
        return None, parts.fragment
    return target, unquote(parts.fragment)


def html_pages(site: Path) -> list[Path]:
    """Every HTML page of the site, assets aside."""
    return sorted(
        p for p in site.rglob("*.html") if not ASSET_DIRS.intersection(p.relative_to(site).parts)
    )


_IMAGES_JS = """async (bound) => {
  const imgs = [...document.querySelectorAll('img')];
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener('load', done); img.addEventListener('error', done);
    setTimeout(done, bound);
  })));
  return imgs.map(img => ({src: img.getAttribute('src') || '', natural: img.naturalWidth,
    naturalHeight: img.naturalHeight, width: img.getBoundingClientRect().width,
    height: img.getBoundingClientRect().height}));
}"""

_MATHJAX_JS = """async (bound) => {
  if (!window.MathJax) return 'absent';
  // The page's load event has fired, so a deferred MathJax script has run if it loaded.
  if (!(window.MathJax.startup && window.MathJax.startup.promise)) return 'not loaded';
  const done = await Promise.race([window.MathJax.startup.promise.then(() => 'typeset'),
    new Promise(r => setTimeout(() => r('timeout'), bound))]);
  return done;
}"""


def _check_images(page: Any, name: str, report: Report) -> None:
    for image in page.evaluate(_IMAGES_JS, IMAGE_S * 1000):
        report.images += 1
        src = image["src"][:80]
        if image["natural"] == 0:
            report.problems.append(f"{name}: image not displayed: {src}")
        elif image["width"] > 0 and image["height"] > 0:
            natural = image["natural"] / image["naturalHeight"]
            shown = image["width"] / image["height"]
            if abs(shown - natural) > ASPECT_TOLERANCE * natural:
                report.problems.append(
                    f"{name}: image {src} shown at aspect {shown:.3f}, natural {natural:.3f}"
                )


def _check_links(page: Any, site: Path, base: str, name: str, report: Report) -> None:
    for href in page.eval_on_selector_all("a[href]", "nodes => nodes.map(a => a.href)"):
        if not href.startswith(base):
            report.external_links += href.startswith("http")
            continue
        report.links += 1
        target, fragment = resolve(site, base, href)
        if target is None:
            report.problems.append(f"{name}: broken link {href[len(base) :]}")
        elif fragment and target.suffix == ".html" and fragment not in page_ids(target):
            report.problems.append(f"{name}: no anchor #{fragment} in {target.name}")


def check_page(page: Any, site: Path, base: str, path: Path, report: Report) -> None:
    """Load one page and check its console, math, images and links."""
    name = path.relative_to(site).as_posix()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "response",
        lambda r: errors.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None,
    )
    try:
        page.goto(base + name, wait_until="load", timeout=PAGE_LOAD_S * 1000)
    except Exception as error:  # a timeout: report it, go on with the next page
        report.problems.append(f"{name}: did not load: {str(error).splitlines()[0]}")
        return
    state = page.evaluate(_MATHJAX_JS, MATHJAX_S * 1000)
    if state not in ("absent", "typeset"):
        report.problems.append(f"{name}: MathJax {state} (bound {MATHJAX_S} s)")
    for text in page.locator("mjx-merror").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('data-mjx-error') || n.textContent)"
    ):
        report.problems.append(f"{name}: MathJax error: {text[:200]}")
    _check_images(page, name, report)
    _check_links(page, site, base, name, report)
    report.problems.extend(f"{name}: console: {text[:200]}" for text in errors)


def check_search(page: Any, base: str, report: Report) -> None:
    """The search page lists at least one result for SEARCH_TERM."""
    page.goto(f"{base}search.html?q={SEARCH_TERM}", timeout=PAGE_LOAD_S * 1000)
    results = page.locator("#search-results ul.search li")
    deadline = time.monotonic() + SEARCH_S
    while results.count() == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    report.search_results = results.count()
    if report.search_results == 0:
        report.problems.append(f"search: no result for {SEARCH_TERM!r} within {SEARCH_S} s")


def check_site(site: Path, screenshots: dict[str, Path] | None = None) -> Report:
    """Check every page of ``site``; take the ``{page: png}`` screenshots asked for."""
    pages = html_pages(site)
    report = Report()
    if not (site / "index.html").is_file():
        report.problems.append(f"{site}: no index.html (run `make site` first)")
        return report
    chromium = find_chromium()
    from playwright.sync_api import sync_playwright

    with serve(site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--disable-dev-shm-usage", "--disable-gpu"]
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def local_only(route: Any) -> None:
                if route.request.url.startswith(base) or route.request.url.startswith("data:"):
                    route.continue_()
                else:
                    report.problems.append(f"request to another host: {route.request.url}")
                    route.abort()

            context.route("**/*", local_only)
            for path in pages:
                page = context.new_page()
                try:
                    check_page(page, site, base, path, report)
                    report.pages += 1
                    shot = (screenshots or {}).get(path.relative_to(site).as_posix())
                    if shot:
                        # A notebook is shown at its first figure, below the set-up cells.
                        first = page.locator("main .cell_output img").first
                        if path.parent.name == "notebooks" and first.count():
                            first.scroll_into_view_if_needed(timeout=PAGE_LOAD_S * 1000)
                        page.screenshot(path=str(shot), full_page=False)
                finally:
                    page.close()
            page = context.new_page()
            try:
                check_search(page, base, report)
            finally:
                page.close()
        finally:
            browser.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", type=Path, default=SITE, help=f"default: {SITE}")
    parser.add_argument(
        "--screenshots",
        type=Path,
        help="write PNGs of the landing page, notebook 04 and an API page here",
    )
    args = parser.parse_args(argv)
    shots = None
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
        found = {p.relative_to(args.site).as_posix() for p in html_pages(args.site)}
        wanted = ["index.html", "api/kdlib.losses.html"]
        wanted += sorted(n for n in found if n.startswith("notebooks/04_"))
        shots = {
            n: args.screenshots / (n.replace("/", "_").removesuffix(".html") + ".png")
            for n in wanted
        }
    start = time.monotonic()
    report = check_site(args.site, shots)
    for problem in report.problems:
        print(f"  - {problem}")
    print(
        f"site: {report.pages} pages, {report.images} images, {report.links} internal links "
        f"checked ({report.external_links} to other sites, not followed), search: "
        f"{report.search_results} results for {SEARCH_TERM!r}, errors: {len(report.problems)} "
        f"({time.monotonic() - start:.0f} s)"
    )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
