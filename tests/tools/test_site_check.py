"""tests/tools/site_check.py's own tests: it passes a sound site and catches each defect.

Two tiny sites are written here: a sound one (a link to an anchor, an image, typeset math,
a search page with a result) and one with a defect on each page (a broken link, a missing
anchor, a missing image, a stretched image, a MathJax error, a console error, a script from
another host) and a search page without results. The MathJax is the site's own copy
(``scripts/build_site.py`` fetches it with npm). Needs Chromium: ``make test-site`` runs these.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from helpers import load_script

BROWSERS = (os.environ.get("CHROMIUM"), "chromium", "chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.site,
    pytest.mark.skipif(
        not any(shutil.which(name) for name in BROWSERS if name),
        reason="needs Chromium (apt-get install -y chromium) or $CHROMIUM",
    ),
]


def _png(width: int, height: int) -> bytes:
    """A grey PNG of ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _page(body: str, math: bool = False) -> str:
    script = '<script defer src="_static/mathjax/tex-mml-chtml.js"></script>' if math else ""
    return f"<!doctype html><html><head><title>t</title>{script}</head><body>{body}</body></html>"


SEARCH_HIT = '<div id="search-results"><ul class="search"><li>temperature</li></ul></div>'
SEARCH_MISS = '<div id="search-results"><ul class="search"></ul></div>'


def _site(folder: Path, pages: dict[str, str]) -> Path:
    build_site = load_script("build_site")
    mathjax = build_site.vendor_mathjax()
    (folder / "_static").mkdir(parents=True)
    (folder / "_static" / "mathjax").symlink_to(mathjax, target_is_directory=True)
    (folder / "wide.png").write_bytes(_png(40, 20))
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_a_sound_site_passes(tmp_path):
    import site_check

    site = _site(
        tmp_path / "site",
        {
            "index.html": _page(
                '<a href="other.html#part">on</a> <img src="wide.png" width="80" height="40">'
                r" <p>\(\mathrm{KL}(p \| q) = \sum_i p_i \log \frac{p_i}{q_i}\)</p>",
                math=True,
            ),
            "other.html": _page('<h2 id="part">Part</h2><a href="index.html">back</a>'),
            "search.html": _page(SEARCH_HIT),
        },
    )
    report = site_check.check_site(site)
    assert report.problems == []
    assert (report.pages, report.images, report.links) == (3, 1, 2)
    assert report.search_results == 1


def test_each_defect_is_reported_on_its_page(tmp_path):
    import site_check

    site = _site(
        tmp_path / "site",
        {
            "index.html": _page('<a href="missing.html">gone</a>'),
            "anchor.html": _page('<a href="index.html#nowhere">no such anchor</a>'),
            "image.html": _page('<img src="absent.png">'),
            "stretched.html": _page('<img src="wide.png" width="40" height="40">'),
            "math.html": _page(r"<p>\(x^2^3\)</p>", math=True),  # double exponent
            "console.html": _page('<script>console.error("boom")</script>'),
            "cdn.html": _page('<script src="https://cdn.example.org/lib.js"></script>'),
            "search.html": _page(SEARCH_MISS),
        },
    )
    problems = "\n".join(site_check.check_site(site).problems)
    expected = [
        "index.html: broken link missing.html",
        "anchor.html: no anchor #nowhere in index.html",
        "image.html: image not displayed: absent.png",
        "stretched.html: image wide.png shown at aspect 1.000, natural 2.000",
        "math.html: MathJax error: Double exponent",
        "console.html: console: boom",
        "request to another host: https://cdn.example.org/lib.js",
        "search: no result for 'temperature'",
    ]
    for line in expected:
        assert line in problems, f"{line!r} not reported:\n{problems}"
    assert "search.html" not in problems.replace("search: no result", "")


def test_a_folder_without_a_site_is_an_error(tmp_path):
    import site_check

    report = site_check.check_site(tmp_path)
    assert report.problems == [f"{tmp_path}: no index.html (run `make site` first)"]
