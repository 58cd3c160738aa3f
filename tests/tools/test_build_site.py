"""scripts/build_site.py's parts that need no Sphinx: links, the landing page, the student view
of the homework, and the list of public names the API reference documents.

The whole build and its pages in a browser: ``make test-site`` (tests/tools/site_check.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import lazy_import, load_script

nbformat = lazy_import("nbformat")
build_site = load_script("build_site")
ROOT = Path(__file__).resolve().parents[2]
REPO = "https://example.org/course"
ASSIGNMENT = ROOT / "assignments" / "source" / "distillation_loss" / "distillation_loss.ipynb"
PLACED = {
    "README.md": "index.md",
    "docs/a.md": "docs/a.md",
    "notebooks/04_mnist_distillation.ipynb": "notebooks/04_mnist_distillation.ipynb",
    "assignments/source/distillation_loss/distillation_loss.ipynb": (
        "assignments/distillation_loss.ipynb"
    ),
}


@pytest.mark.parametrize(
    ("origin", "link", "expected"),
    [
        # A page of the site, from a page in another folder: relative, anchor kept.
        (
            "docs/a.md",
            "../notebooks/04_mnist_distillation.ipynb#setup",
            "../notebooks/04_mnist_distillation.ipynb#setup",
        ),
        # The homework moves from assignments/source/NAME/ to assignments/.
        (
            "README.md",
            "assignments/source/distillation_loss/distillation_loss.ipynb",
            "assignments/distillation_loss.ipynb",
        ),
        (
            "assignments/source/distillation_loss/distillation_loss.ipynb",
            "../../../notebooks/04_mnist_distillation.ipynb",
            "../notebooks/04_mnist_distillation.ipynb",
        ),
        # A file of the repository that is no page: the repository's copy.
        (
            "docs/a.md",
            "../results/04_mnist_distillation.json",
            f"{REPO}/blob/main/results/04_mnist_distillation.json",
        ),
        ("README.md", "data/", f"{REPO}/tree/main/data"),
        # Left alone: other sites, anchors on the page, and a file that does not exist (Sphinx
        # then fails the build on it).
        ("docs/a.md", "https://arxiv.org/abs/1503.02531", "https://arxiv.org/abs/1503.02531"),
        ("docs/a.md", "#a-section", "#a-section"),
        ("docs/a.md", "../no_such_file.md", "../no_such_file.md"),
    ],
)
def test_links_point_into_the_site_or_the_repository(origin, link, expected):
    text = f"See [the page]({link}), and ![a figure]({link})."
    got = build_site.rewrite_links(text, origin, PLACED, REPO)
    assert got == f"See [the page]({expected}), and ![a figure]({expected})."


README = """# Title

Intro paragraph.

## Quick start

Install.

## Notebooks

The list.

## Run it in Colab

Click.
"""


def test_the_landing_page_is_the_intro_and_the_course_sections_in_order():
    page = build_site.landing_page(README, ("Run it in Colab", "Notebooks"))
    expected = "# Title\n\nIntro paragraph.\n\n## Run it in Colab\n\nClick.\n\n"
    assert page == expected + "## Notebooks\n\nThe list.\n"


def test_a_missing_readme_section_names_the_sections_there_are():
    with pytest.raises(SystemExit, match=r"no section \['Homework'\].*'Quick start', 'Notebooks'"):
        build_site.landing_page(README, ("Notebooks", "Homework"))


def test_the_committed_readme_has_the_landing_sections():
    page = build_site.landing_page((ROOT / "README.md").read_text(encoding="utf-8"))
    assert page.startswith("# ") and "## Notebooks" in page


def _marked_lines(source: Path) -> list[str]:
    """Every line inside nbgrader's solution and hidden-test markers, read independently."""
    lines, inside = [], False
    for cell in nbformat.read(source, as_version=4).cells:
        for line in cell.source.splitlines():
            if "### BEGIN" in line:
                inside = True
            elif "### END" in line:
                inside = False
            elif inside and line.strip():
                lines.append(line.strip())
    return lines


def test_the_student_view_has_no_solution_and_no_hidden_test():
    released = build_site.student_view(ASSIGNMENT)
    text = "\n".join(cell.source for cell in released.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    secret = _marked_lines(ASSIGNMENT)
    assert len(secret) > 10, "the homework has solutions and hidden tests to hide"
    shown = {line.strip() for line in text.splitlines()}
    leaked = [line for line in secret if line in shown and len(line) > 20]
    # Only a solution's opening line that the stub keeps (a signature or docstring) may stay.
    assert all(line.startswith(('"""', "def ")) for line in leaked), leaked
    assert "raise NotImplementedError()" in text and "YOUR ANSWER HERE" in text
    assert all(not cell.get("outputs") for cell in released.cells if cell.cell_type == "code")


def test_a_solution_line_in_a_built_page_is_reported(tmp_path):
    secret = 'student = models.mlp(hidden=(32,), name="student")'
    page = tmp_path / "assignments" / "hw.html"
    page.parent.mkdir()
    page.write_text(
        '<pre><span class="n">student</span> <span class="o">=</span> '
        "models.mlp(hidden=(32,), name=&quot;student&quot;)</pre>",
        encoding="utf-8",
    )
    assert build_site.check_student_pages(tmp_path, {"hw": [secret]}) == [
        f"hw.html shows the solution line {secret!r}"
    ]
    page.write_text("<p>### BEGIN HIDDEN TESTS</p>", encoding="utf-8")
    assert build_site.check_student_pages(tmp_path, {"hw": []}) == [
        "hw.html shows 'BEGIN HIDDEN TESTS'"
    ]
    page.write_text("<pre>raise NotImplementedError()</pre>", encoding="utf-8")
    assert build_site.check_student_pages(tmp_path, {"hw": [secret]}) == []


def test_the_reference_documents_the_recorded_public_api():
    """The same modules and names as tests/public_api.json's recorder (scripts/public_api.py)."""
    recorded = load_script("public_api").public_api()
    recorded.pop("deprecated", None)  # the 0.2.0 paths that only warn: not documented
    documented = build_site.public_api()
    assert set(documented) == set(recorded)
    for module, names in documented.items():
        assert set(names) == {n for n in recorded[module] if not n.startswith("__")}, module


def test_each_public_object_is_documented_in_full_once():
    pages = build_site.api_pages(build_site.public_api())
    directives = [
        line.split("::", 1)[1].strip()
        for text in pages.values()
        for line in text.splitlines()
        if line.startswith(".. auto") and not line.startswith((".. automodule", ".. autosummary"))
    ]
    assert len(directives) == len(set(directives))
    assert "kdlib.distiller.Distiller" in directives  # listed by kdlib and kdlib.distiller
    assert "kdlib.Distiller" not in directives
