"""The Colab path: the set-up cell's behaviour, the release pin, and `make test-colab`'s logic.

The set-up cell is run here as Python with stand-ins for what only Colab has (``google.colab``,
the network behind ``pip``); ``make test-colab`` runs it for real in Colab's package versions.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers import lazy_script, load_script
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


sync = lazy_script("sync_notebooks")
parity = load_script("colab_parity")
URL = "https://github.com/o/r"
SPEC = "kdlib @ git+https://github.com/o/r@v9.8.7"


# -------------------------------------------------------------- the release pin
def test_notebooks_pin_the_version_in_pyproject_and_kdlib_has_it():
    import kdlib

    with open(ROOT / "pyproject.toml", "rb") as f:
        version = parity.tomllib.load(f)["project"]["version"]
    assert sync.project_version() == version
    assert kdlib.__version__ == version, "kdlib.__version__ must match pyproject.toml's version"
    source = sync.setup_source(sync.repository_url())
    assert f'KDLIB_VERSION = "{version}"\n' in source
    assert f'@v{version}"\n' in source


def test_docs_name_the_pinned_release():
    tag = sync.release_tag(sync.project_version())
    for doc in ("docs/colab.md",):
        pins = re.findall(r"@(v\d[\w.]*)\b", (ROOT / doc).read_text(encoding="utf-8"))
        assert pins and set(pins) == {tag}, f"{doc} names {set(pins)}, pyproject.toml {tag}"


@pytest.mark.parametrize("version", [None, 1, "", "latest", "v1.0"])
def test_a_missing_or_odd_version_is_refused(tmp_path, version):
    pyproject = tmp_path / "pyproject.toml"
    line = "" if version is None else f"version = {version!r}\n".replace("'", '"')
    pyproject.write_text(f'[project]\nname = "x"\n{line}')
    with pytest.raises(SystemExit, match=r"needs a \[project\] version"):
        sync.project_version(pyproject)


# -------------------------------------------------------------- running the set-up cell
class Colab:
    """Stand-ins for Colab: google.colab, pip (via subprocess.run), installed kdlib, ipywidgets."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, in_colab: bool = True) -> None:
        self.monkeypatch = monkeypatch
        self.pip_calls: list[list[str]] = []
        self.widget_manager_calls = 0
        self.pip_returncode = 0
        self.pip_stderr = ""
        self.installed: str | None = None
        self.quiet_starts = 0
        if in_colab:
            google = types.ModuleType("google")
            google.__path__ = []
            colab = types.ModuleType("google.colab")
            output = types.ModuleType("google.colab.output")
            output.enable_custom_widget_manager = self._enable_widget_manager
            colab.output = output
            monkeypatch.setitem(sys.modules, "google", google)
            monkeypatch.setitem(sys.modules, "google.colab", colab)
            monkeypatch.setitem(sys.modules, "google.colab.output", output)
        else:
            monkeypatch.setitem(sys.modules, "google.colab", None)  # import raises ImportError
        monkeypatch.setattr(subprocess, "run", self._run)
        real_version = importlib.metadata.version

        def version(name: str) -> str:
            if name != "kdlib":
                return real_version(name)
            if self.installed is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return self.installed

        monkeypatch.setattr(importlib.metadata, "version", version)
        self.ipywidgets("7.7.1")
        self.kdlib("9.8.7")

    def _enable_widget_manager(self) -> None:
        self.widget_manager_calls += 1

    def _run(self, args, **kwargs):
        self.pip_calls.append(list(args))
        return subprocess.CompletedProcess(args, self.pip_returncode, "", self.pip_stderr)

    def ipywidgets(self, version: str) -> None:
        module = types.ModuleType("ipywidgets")
        module.__version__ = version
        self.monkeypatch.setitem(sys.modules, "ipywidgets", module)

    def kdlib(self, version: str) -> None:
        module = types.ModuleType("kdlib")
        module.__version__ = version
        runtime = types.ModuleType("kdlib.runtime")  # the cell's last step: start Keras quietly
        runtime.start_quietly = self._start_quietly
        module.runtime = runtime
        self.monkeypatch.setitem(sys.modules, "kdlib", module)
        self.monkeypatch.setitem(sys.modules, "kdlib.runtime", runtime)

    def _start_quietly(self) -> None:
        self.quiet_starts += 1

    def run_cell(self, source: str | None = None) -> None:
        source = sync.setup_source(URL, "9.8.7") if source is None else source
        exec(compile(source, "<colab-setup>", "exec"), {"__name__": "__main__"})  # noqa: S102


def test_outside_colab_the_cell_does_nothing_and_prints_nothing(monkeypatch, capsys):
    colab = Colab(monkeypatch, in_colab=False)
    colab.run_cell(sync.setup_source(sync.repository_url()))
    assert colab.pip_calls == [] and colab.widget_manager_calls == 0
    assert capsys.readouterr() == ("", "")
    assert colab.quiet_starts == 1  # Keras started without TensorFlow's C++ start-up lines


def test_in_colab_the_cell_installs_the_pinned_release_and_checks_it(monkeypatch, capsys):
    colab = Colab(monkeypatch)
    colab.run_cell()
    assert colab.pip_calls == [[sys.executable, "-m", "pip", "install", "-q", SPEC]]
    assert capsys.readouterr().out == "kdlib 9.8.7 is ready (ipywidgets 7.7.1).\n"


def test_with_the_right_kdlib_installed_the_cell_skips_pip(monkeypatch, capsys):
    colab = Colab(monkeypatch)
    colab.installed = "9.8.7"
    colab.run_cell()
    assert colab.pip_calls == []
    assert "kdlib 9.8.7 is ready" in capsys.readouterr().out


def test_another_installed_version_is_replaced(monkeypatch):
    colab = Colab(monkeypatch)
    colab.installed = "0.0.1"
    colab.run_cell()
    assert colab.pip_calls == [[sys.executable, "-m", "pip", "install", "-q", SPEC]]


@pytest.mark.parametrize(("version", "calls"), [("7.7.1", 0), ("7.8.0", 0), ("8.1.9", 1)])
def test_the_custom_widget_manager_is_enabled_only_for_ipywidgets_8(monkeypatch, version, calls):
    colab = Colab(monkeypatch)
    colab.ipywidgets(version)
    colab.run_cell()
    assert colab.widget_manager_calls == calls


def test_a_failed_pip_install_raises_with_pip_message_and_advice(monkeypatch, capsys):
    colab = Colab(monkeypatch)
    colab.pip_returncode = 1
    colab.pip_stderr = "ERROR: Could not find a version that satisfies the requirement\n"
    with pytest.raises(RuntimeError) as caught:
        colab.run_cell()
    message = str(caught.value)
    assert f'pip install "{SPEC}" failed (exit status 1)' in message
    assert "Could not find a version that satisfies" in message
    assert "What to do:" in message and "run this cell again" in message
    assert capsys.readouterr().out == ""


def test_a_kdlib_of_another_version_already_imported_asks_for_a_restart(monkeypatch):
    colab = Colab(monkeypatch)
    colab.kdlib("0.0.1")
    with pytest.raises(RuntimeError, match=r"kdlib 0\.0\.1 is loaded.*needs kdlib 9\.8\.7"):
        colab.run_cell()
    with pytest.raises(RuntimeError, match=r"Runtime > Restart session"):
        colab.run_cell()


def test_kdlib_that_cannot_be_imported_after_pip_is_explained(monkeypatch):
    colab = Colab(monkeypatch)
    monkeypatch.setitem(sys.modules, "kdlib", None)  # import raises ImportError
    with pytest.raises(RuntimeError, match=r"cannot be imported.*Restart session"):
        colab.run_cell()


# -------------------------------------------------------------- make test-colab's logic
FREEZE = """\
# Do not modify this file directly
absl-py==1.4.0
ipywidgets==7.7.1
Jupyter_Client==7.4.9
google-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz
numpy==2.1.3
"""


def test_parse_freeze_keeps_pins_and_normalises_names():
    colab = parity.parse_freeze(FREEZE)
    assert colab == {
        "absl-py": ("absl-py", "1.4.0"),
        "ipywidgets": ("ipywidgets", "7.7.1"),
        "jupyter-client": ("Jupyter_Client", "7.4.9"),
        "numpy": ("numpy", "2.1.3"),
    }


def test_python_version_comes_from_os_info():
    assert parity.python_minor("Ubuntu 22.04.5 LTS\nPython 3.13.15\n") == "3.13"
    with pytest.raises(SystemExit, match="no 'Python X.Y' line"):
        parity.python_minor("Ubuntu 22.04.5 LTS\n")


def test_bounds_are_checked_against_colab_versions():
    colab = parity.parse_freeze(FREEZE)
    reqs = [Requirement(r) for r in ("ipywidgets>=8.0", "numpy>=1.26", "nbval>=0.11")]
    bounds = parity.check_bounds(reqs, colab, "3.13")
    assert [(b.requirement, b.colab_version, b.admitted) for b in bounds] == [
        ("ipywidgets>=8.0", "7.7.1", False),
        ("numpy>=1.26", "2.1.3", True),
    ]
    old_python_only = [Requirement('numpy<2; python_version < "3.11"')]
    assert parity.check_bounds(old_python_only, colab, "3.13") == []


def test_the_project_bounds_admit_colab_versions():
    """pyproject.toml against the published list (skipped only where the list is absent)."""
    freeze = next((p for p in parity.FREEZE_CANDIDATES if p.is_file()), None)
    if freeze is None:
        pytest.skip("Colab's pip-freeze.txt is not beside this clone (../shared/colab/)")
    colab = parity.parse_freeze(freeze.read_text(encoding="utf-8"))
    with open(ROOT / "pyproject.toml", "rb") as f:
        bounds = parity.check_bounds(parity.requirements(parity.tomllib.load(f)), colab, "3.13")
    assert {"ipywidgets", "keras", "tensorflow", "numpy", "matplotlib", "ipykernel"} <= {
        Requirement(b.requirement).name for b in bounds
    }
    assert [b for b in bounds if not b.admitted] == []


def test_base_is_kdlib_dependencies_and_test_tools_by_name():
    pyproject = {"project": {"dependencies": ["Keras>=3.12", "ipywidgets>=7.7"]}}
    assert parity.base_names(pyproject) == ["ipykernel", "ipywidgets", "keras", "nbval", "pytest"]


def test_compare_reports_changed_removed_and_added_packages():
    colab = parity.parse_freeze(FREEZE)
    before = {"absl-py": "1.4.0", "ipywidgets": "7.7.1", "numpy": "2.1.3", "nbval": "0.11.0"}
    after = {"absl-py": "1.4.0", "ipywidgets": "8.1.9", "nbval": "0.11.0", "kdlib": "0.1.0"}
    result = parity.compare(colab, before, after)
    assert result.checked == {"absl-py": "1.4.0", "ipywidgets": "7.7.1", "numpy": "2.1.3"}
    assert result.changed == {"ipywidgets": ("7.7.1", "8.1.9"), "numpy": ("2.1.3", None)}
    assert result.added == {"kdlib": "0.1.0"}
    # A Colab package that kdlib's install brought at another version counts as changed.
    result = parity.compare(colab, {}, {"jupyter-client": "8.0.0"})
    assert result.changed == {"Jupyter_Client": ("7.4.9", "8.0.0")}
    assert parity.compare(colab, before, before).changed == {}


def test_python_313_is_looked_for_in_pyenv_then_on_path(tmp_path):
    for version in ("3.13.0", "3.13.2", "3.12.1"):
        binary = tmp_path / "versions" / version / "bin" / f"python{version[:4]}"
        binary.parent.mkdir(parents=True)
        binary.touch()
    env = {"PYENV_ROOT": str(tmp_path), "PATH": str(tmp_path / "nowhere")}
    found = parity.python_candidates("3.13", env)
    assert found[:2] == [
        str(tmp_path / "versions/3.13.2/bin/python3.13"),
        str(tmp_path / "versions/3.13.0/bin/python3.13"),
    ]
    assert "/usr/bin/python3.13" in found
    assert parity.python_candidates("3.13", {**env, "COLAB_PYTHON": "/x/py"})[0] == "/x/py"


def test_no_python_313_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(parity, "python_candidates", lambda minor, environ: ["/nowhere/python"])
    with pytest.raises(SystemExit, match=r"no working Python 3\.13.*pyenv install 3\.13"):
        parity.find_python("3.13", apt=False)
