#!/usr/bin/env python
"""`make test-browser`: every notebook in JupyterLab in headless Chromium, as a student sees it.

For each ``notebooks/NN_*.ipynb`` (a temporary copy: the working tree is never touched) it
opens the notebook, runs Run All with ``KDLIB_FAST=1`` in the server's environment, and
requires

- every code cell run, no stderr box, and no error output except in a cell tagged
  ``raises-exception`` (the course's convention for a cell that shows an error on purpose);
- no MathJax error (a red box of raw TeX) in any Markdown cell;
- every output image displayed (``naturalWidth > 0``), and each widget's plot no wider on
  screen than its pixels (not stretched, so not blurry);
- each widget shown as the live widget (not its static picture as well), and every slider
  of every widget, dragged with the mouse, changing the widget's output.

It starts its own JupyterLab on 127.0.0.1 (a free port, a private token) and stops it by its
PID, also on failure (``tests/tools/labserver.py``, shared with the test of ``make lab``). Every
wait has a bound. Chromium is Debian's ``chromium`` package (``apt-get install -y
chromium``), driven by playwright through ``executable_path``: playwright's own browser
download needs the internet. The last line says what was checked, e.g.
``browser: 4 notebooks, 37 cells run, 2 widgets (7 sliders) moved, errors: 0``.

Usage::

    python tests/tools/browser_check.py                          # every notebooks/NN_*.ipynb
    python tests/tools/browser_check.py notebooks/01_*.ipynb     # some of them
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labserver import LabServer

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_S = 120
PAGE_LOAD_S = 90
RUN_ALL_S = 300  # one notebook, fast mode; about 60 s on 2 cores
SLIDER_S = 30  # a slider moved until the widget's output changed
SETTINGS = {
    # Every cell in the DOM (no virtual scrolling), so every output and equation is checked.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # No news or update checks: the test machine is offline.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


@dataclass
class Result:
    """What one notebook showed."""

    name: str
    cells_run: int = 0
    widgets_moved: int = 0
    sliders_moved: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def find_chromium() -> str:
    """Debian's Chromium (or $CHROMIUM); a clear error saying how to install it otherwise."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        path = candidate and shutil.which(candidate)
        if path:
            return path
    raise SystemExit(
        "browser: no Chromium found. Install Debian's package (sudo apt-get install -y "
        "chromium) or set CHROMIUM=/path/to/chrome; playwright's own download needs internet."
    )


def start_lab(folder: Path, tmp: Path) -> LabServer:
    """JupyterLab on 127.0.0.1 serving ``folder``, with a free port and fast mode."""
    settings = tmp / "settings"
    for name, values in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")
    env = dict(os.environ, KDLIB_FAST="1", JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    env.pop("MPLBACKEND", None)  # the kernel's inline backend shows the plots
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--expose-app-in-browser",  # window.jupyterapp: run commands, read kernel status
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",  # the OS picks a free port; the printed URL says which
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={folder}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    return LabServer(argv, cwd=tmp, env=env)


_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.sessionContext) return {kernel: null, cells: []};
  const cells = panel.content.widgets.filter(c => c.model.type === 'code').map(c => ({
    count: c.model.executionCount,
    tags: c.model.getMetadata('tags') || [],
    outputs: c.model.outputs.toJSON().map(o => ({
      type: o.output_type,
      name: o.name || '',
      text: o.output_type === 'error'
        ? `${o.ename}: ${o.evalue}` : [].concat(o.text || []).join(''),
    })),
  }));
  return {kernel: panel.sessionContext.kernelDisplayStatus, cells};
}"""

_IMAGES_JS = """async () => {
  const imgs = [...document.querySelectorAll('.jp-OutputArea-output img')];
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener('load', done); img.addEventListener('error', done);
    setTimeout(done, 10000);
  })));
  return imgs.map(img => ({natural: img.naturalWidth, shown: img.clientWidth,
    widget: !!img.closest('.jupyter-widgets'), src: img.src.slice(0, 40)}));
}"""


_DECODED_JS = """async node => Promise.all([...node.querySelectorAll('img')].map(
  img => img.decode().then(() => img.naturalWidth, () => 0)))"""


def _wait(page: Any, predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f} s")
        page.wait_for_timeout(250)


# Run All, counting the kernel's execute requests and replies. Done means every code cell was
# sent and answered (an aborted cell is answered too) and the kernel is idle. An idle kernel
# with no [*] prompt is not enough: the kernel is idle for a moment between two cells, and
# after a cell tagged raises-exception fails, JupyterLab drops the [*] of the cells still
# queued although the kernel goes on to run them (tests/tools/test_browser_check.py).
_RUN_ALL_JS = """() => {
  const counts = {sent: 0, replied: 0};
  window.kdlibRunAll = counts;
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  kernel.anyMessage.connect((_, {direction, msg}) => {
    const type = msg.header.msg_type;
    if (direction === 'send' && type === 'execute_request') counts.sent += 1;
    if (direction === 'recv' && type === 'execute_reply') counts.replied += 1;
  });
  window.jupyterapp.commands.execute('notebook:run-all-cells');
}"""


def _run_all(page: Any, result: Result) -> None:
    _wait(
        page,
        lambda: page.evaluate(_STATE_JS)["kernel"] == "idle",
        PAGE_LOAD_S,
        "kernel start",
    )
    page.evaluate(_RUN_ALL_JS)
    progress = {"sent": 0, "replied": 0}

    def finished() -> dict[str, Any] | None:
        state = page.evaluate(_STATE_JS)
        progress.update(page.evaluate("() => window.kdlibRunAll"))
        done = progress["sent"] == progress["replied"] == len(state["cells"])
        return state if done and state["kernel"] == "idle" else None

    try:
        _wait(page, finished, RUN_ALL_S, "Run All")
        page.wait_for_timeout(1000)  # let the last outputs, images and equations render
        state = _wait(page, finished, RUN_ALL_S, "Run All")
    except TimeoutError as error:
        raise TimeoutError(
            f"{error} ({progress['replied']} of {len(page.evaluate(_STATE_JS)['cells'])} "
            f"code cells answered, {progress['sent']} sent)"
        ) from None
    cells = state["cells"]
    result.cells_run = sum(cell["count"] is not None for cell in cells)
    if result.cells_run != len(cells):
        result.problems.append(f"{len(cells) - result.cells_run} code cells did not run")
    for cell in cells:
        # The course's convention (tests/test_notebooks.py): an error output is expected only
        # in a cell tagged raises-exception, which Run All runs past.
        expected_error = "raises-exception" in cell["tags"]
        for out in cell["outputs"]:
            lines = out["text"].strip().splitlines() or [""]
            more = f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""
            if out["type"] == "error" and not expected_error:
                result.problems.append(f"error output: {lines[0][:200]}{more}")
            elif out["type"] == "stream" and out["name"] == "stderr":
                result.problems.append(f"stderr box: {lines[0][:200]}{more}")


def _check_outputs(page: Any, result: Result) -> None:
    for text in page.locator("mjx-merror").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('data-mjx-error') || n.textContent)"
    ):
        result.problems.append(f"MathJax error: {text[:200]}")
    for image in page.evaluate(_IMAGES_JS):
        if image["natural"] == 0:
            result.problems.append(f"image not displayed: {image['src']}...")
        elif image["widget"] and image["shown"] > image["natural"]:
            result.problems.append(
                f"widget plot stretched: {image['natural']} px wide shown at {image['shown']} px"
            )


def _widget_signature(view: Any) -> str:
    """What a widget shows: its text and its images' sources."""
    return view.evaluate(
        "n => n.innerText + [...n.querySelectorAll('img')].map(i => i.src).join('|')"
    )


def _drag(page: Any, handle: Any, track: Any) -> None:
    """Drag a slider handle with the mouse to a quarter or three quarters of its track."""
    handle.scroll_into_view_if_needed()
    h, t = handle.bounding_box(), track.bounding_box()
    x, y = h["x"] + h["width"] / 2, h["y"] + h["height"] / 2
    target = t["x"] + t["width"] * (0.25 if x > t["x"] + t["width"] / 2 else 0.75)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(target, y, steps=8)
    page.mouse.up()


def _move_sliders(page: Any, result: Result) -> None:
    # JupyterLab gives a widget's output node no data-mime-type; it holds the widget's DOM.
    views = page.locator(".jp-OutputArea-output:has(.jupyter-widgets)")
    for i in range(views.count()):
        view = views.nth(i)
        cell = view.locator("xpath=ancestor::div[contains(@class, 'jp-CodeCell')]")
        if cell.locator('.jp-OutputArea-output[data-mime-type="image/png"]').count():
            result.problems.append(f"widget {i + 1}: its static picture is shown beside it")
        sliders = view.locator(".widget-slider")
        if sliders.count() == 0:
            continue
        moved = 0
        for j in range(sliders.count()):
            slider = sliders.nth(j)
            handle = slider.locator(".noUi-handle, .ui-slider-handle").first
            track = slider.locator(".noUi-target, .ui-slider").first
            before = _widget_signature(view)
            _drag(page, handle, track)
            try:
                _wait(
                    page,
                    lambda view=view, before=before: _widget_signature(view) != before,
                    SLIDER_S,
                    "slider",
                )
                moved += 1
            except TimeoutError:
                label = slider.inner_text().strip().replace("\n", " ")
                result.problems.append(f"widget {i + 1}, slider {label!r}: output did not change")
        result.sliders_moved += moved
        result.widgets_moved += moved == sliders.count()
        # The plot the last move produced must decode and show, like the first one did.
        shown = view.evaluate(_DECODED_JS)
        if not shown or 0 in shown:
            result.problems.append(f"widget {i + 1}: plot not displayed after the moves")


def check_notebook(browser: Any, lab: LabServer, name: str) -> Result:
    """Open ``name`` in a fresh page, Run All, check what it shows, move its sliders."""
    result = Result(name)
    start = time.monotonic()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console_errors: list[str] = []
    page.on("pageerror", lambda error: console_errors.append(str(error)))
    try:
        page.goto(f"{lab.base}lab/tree/{name}?reset&token={lab.token}", timeout=PAGE_LOAD_S * 1000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=PAGE_LOAD_S * 1000)
        _run_all(page, result)
        _check_outputs(page, result)
        _move_sliders(page, result)
    except Exception as error:  # a timeout or a missing element: report it, go on
        result.problems.append(f"{type(error).__name__}: {str(error).splitlines()[0]}")
    finally:
        page.close()
        for session in lab.get_json("/api/sessions"):
            lab.request("DELETE", f"/api/sessions/{session['id']}").close()
    result.problems.extend(f"page error: {e[:200]}" for e in console_errors)
    result.seconds = time.monotonic() - start
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="default: notebooks/NN_*.ipynb")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"browser: no such notebook: {', '.join(missing)}")
    if not paths:
        raise SystemExit("browser: no notebooks/NN_*.ipynb to check")
    chromium = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("browser: playwright is missing; pip install -e '.[dev]'") from None

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="kdlib-browser-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "notebooks"
        folder.mkdir()
        for path in paths:
            shutil.copy2(path, folder / path.name)
        with start_lab(folder, tmp) as lab:
            lab.wait_ready(timeout=SERVER_START_S)
            print(f"browser: JupyterLab at {lab.base} (PID {lab.process.pid}), {chromium}")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--disable-dev-shm-usage", "--disable-gpu"]
                )
                try:
                    for path in paths:
                        result = check_notebook(browser, lab, path.name)
                        results.append(result)
                        status = "ok" if not result.problems else f"{len(result.problems)} errors"
                        print(
                            f"  {result.name}: {result.cells_run} cells run, "
                            f"{result.sliders_moved} sliders moved, {status} "
                            f"({result.seconds:.0f} s)",
                            flush=True,
                        )
                        for problem in result.problems:
                            print(f"    - {problem}", flush=True)
                finally:
                    browser.close()
            leftover = lab.stop()
            if leftover:
                print(f"browser: JupyterLab needed SIGKILL (PIDs {leftover})")
    errors = sum(len(r.problems) for r in results)
    print(
        f"browser: {len(results)} notebooks, {sum(r.cells_run for r in results)} cells run, "
        f"{sum(r.widgets_moved for r in results)} widgets "
        f"({sum(r.sliders_moved for r in results)} sliders) moved, errors: {errors}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
