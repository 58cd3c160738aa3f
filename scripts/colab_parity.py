#!/usr/bin/env python
"""``make test-colab``: kdlib in Google Colab's runtime, rebuilt from Colab's published list.

1. Reads Colab's package list, ``../shared/colab/pip-freeze.txt`` (and ``os-info.txt`` beside
   it for the Python version), and checks that every requirement in ``pyproject.toml``
   (dependencies and extras) admits Colab's version of the package it names.
2. Builds a virtualenv with Colab's Python (3.13: pyenv's, else ``python3.13`` on PATH, e.g.
   Debian's package) holding Colab's versions of the packages that matter: kdlib's
   dependencies and the test tools (ipykernel, pytest, nbval), with Colab's whole list as
   pip constraints, and pip itself at Colab's version.
3. Runs the notebooks' Colab set-up cell there: the text ``scripts/sync_notebooks.py`` writes,
   rendered with a ``git+file://`` URL of this clone in place of the repository and the
   commit under test in place of the release tag, with a stand-in ``google.colab`` module.
   So kdlib is installed as in Colab: non-editable, by pip, from git.
4. Fails if that install changed, removed or replaced any of Colab's packages, and prints
   the versions it checked.
5. From a copy of the commit without ``kdlib/`` (so only the installed kdlib can be
   imported), runs ``tests/test_widgets.py`` and every notebook through nbval, fast mode.

The virtualenv (``build/colab-venv``) is reused while Colab's list, the Python and the
dependency names stay the same; ``--fresh`` rebuilds it (a clean clone always builds it).

Usage::

    python scripts/colab_parity.py [--fresh] [--apt] [--freeze PATH] [--venv DIR]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# Beside the clone, or where $COLAB_FREEZE (a file) and $KDLIB_DATA_DIR (a folder) point.
FREEZE_CANDIDATES = tuple(
    Path(p)
    for p in (os.environ.get("COLAB_FREEZE"), ROOT.parent / "shared/colab/pip-freeze.txt")
    if p
)
DATA_CANDIDATES = (ROOT.parent / "shared/data",)
# Besides kdlib's own dependencies: what runs the tests in the Colab environment.
TEST_TOOLS = ("ipykernel", "pytest", "nbval")
WIDGET_TESTS = "tests/test_widgets.py"
CACHE_FORMAT = 1  # bump when the way the environment is built changes
STAND_IN_COLAB = {
    "google/__init__.py": (
        "# Stand-in: the real google.* packages (protobuf...) stay importable.\n"
        "from pkgutil import extend_path\n\n__path__ = extend_path(__path__, __name__)\n"
    ),
    "google/colab/__init__.py": '"""Stand-in for Colab\'s google.colab (make test-colab)."""\n',
    "google/colab/output.py": (
        "def enable_custom_widget_manager():\n"
        '    print("[stand-in] google.colab.output.enable_custom_widget_manager() called")\n'
    ),
}
WIDGET_MANAGER_CALLED = "enable_custom_widget_manager() called"


class ParityError(SystemExit):
    """A failure of the parity test, with a message that says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(f"\ntest-colab FAILED: {message}")


# ------------------------------------------------------------------ Colab's list
def parse_freeze(text: str) -> dict[str, tuple[str, str]]:
    """``pip freeze`` lines ``name==version`` as {canonical name: (name, version)}.

    Comments, blank lines and direct references (``name @ URL``) are left out: pip cannot be
    constrained to them by version.
    """
    packages = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            packages[canonicalize_name(match[1])] = (match[1], match[2])
    return packages


def python_minor(os_info: str) -> str:
    """``3.13`` from the ``Python 3.13.15`` line of Colab's ``os-info.txt``."""
    match = re.search(r"^Python (\d+)\.(\d+)", os_info, flags=re.MULTILINE)
    if match is None:
        raise ParityError(f"no 'Python X.Y' line in Colab's os-info.txt:\n{os_info}")
    return f"{match[1]}.{match[2]}"


def find_freeze(explicit: str | None) -> Path:
    candidates = [Path(explicit)] if explicit else list(FREEZE_CANDIDATES)
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise ParityError(
        "Colab's package list is missing; looked for "
        + ", ".join(str(p) for p in candidates)
        + ". It is a copy of googlecolab/backend-info's pip-freeze.txt: put it there or pass "
        "--freeze PATH."
    )


# ------------------------------------------------------------------ pyproject.toml
def requirements(pyproject: dict) -> list[Requirement]:
    """Every requirement of the project: dependencies, then each extra's."""
    project = pyproject["project"]
    texts = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        texts.extend(extra)
    return [Requirement(t) for t in texts]


@dataclass(frozen=True)
class Bound:
    requirement: str
    colab_version: str
    admitted: bool


def check_bounds(
    reqs: list[Requirement], colab: dict[str, tuple[str, str]], python: str
) -> list[Bound]:
    """For each requirement naming a package that Colab has: does it admit Colab's version?"""
    env = {"python_version": python, "python_full_version": f"{python}.0"}
    bounds = []
    for req in reqs:
        key = canonicalize_name(req.name)
        if key not in colab or (req.marker is not None and not req.marker.evaluate(env)):
            continue
        version = colab[key][1]
        bounds.append(Bound(str(req), version, req.specifier.contains(version, prereleases=True)))
    return bounds


def base_names(pyproject: dict) -> list[str]:
    """What the environment is built from: kdlib's dependency names plus the test tools.

    Names only, no version bounds: Colab's constraints decide the versions, so a bound in
    pyproject.toml that excludes Colab's version shows up as a change when kdlib installs.
    The extras (``dev``) are not installed in Colab; ``check_bounds`` covers their bounds.
    """
    names = {canonicalize_name(Requirement(r).name) for r in pyproject["project"]["dependencies"]}
    return sorted(names | set(TEST_TOOLS))


# ------------------------------------------------------------------ comparing environments
@dataclass(frozen=True)
class Comparison:
    checked: dict[str, str]  # Colab's packages in the environment: name -> version
    changed: dict[str, tuple[str, str | None]]  # name -> (Colab's version, after or None)
    added: dict[str, str]  # installed by kdlib's install, not in Colab's list


def compare(
    colab: dict[str, tuple[str, str]], before: dict[str, str], after: dict[str, str]
) -> Comparison:
    """What installing kdlib did to Colab's packages.

    ``before`` and ``after`` map canonical names to versions. A package counts as Colab's if
    Colab's list has it and it was in the environment before, or kdlib's install brought it.
    """
    checked, changed, added = {}, {}, {}
    for key in sorted(set(before) | set(after)):
        if key in colab:
            name, wanted = colab[key]
            checked[name] = wanted
            if after.get(key) != wanted:
                changed[name] = (wanted, after.get(key))
        elif key not in before:
            added[key] = after[key]
    return Comparison(checked, changed, added)


def wrap(items: list[str], indent: str = "    ") -> str:
    return textwrap.fill(
        " · ".join(items),
        width=99,
        initial_indent=indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
    )


# ------------------------------------------------------------------ finding Python
def python_candidates(minor: str, environ: dict[str, str]) -> list[str]:
    """Where a Python ``minor`` may be: $COLAB_PYTHON, pyenv's versions (newest first), PATH."""
    found = []
    if environ.get("COLAB_PYTHON"):
        found.append(environ["COLAB_PYTHON"])
    roots = [environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in dict.fromkeys(r for r in roots if r):
        pattern = f"{root}/versions/{minor}.*/bin/python{minor}"
        versions = glob.glob(pattern)
        versions.sort(key=lambda p: Version(Path(p).parents[1].name.split("-")[0]), reverse=True)
        found.extend(versions)
    on_path = shutil.which(f"python{minor}", path=environ.get("PATH"))
    found.extend(
        p for p in (on_path, f"/usr/bin/python{minor}", f"/usr/local/bin/python{minor}") if p
    )
    return list(dict.fromkeys(found))


def working_python(candidate: str, minor: str) -> bool:
    try:
        out = subprocess.run(
            [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == minor


def find_python(minor: str, apt: bool) -> str:
    candidates = python_candidates(minor, dict(os.environ))
    for candidate in candidates:
        if working_python(candidate, minor):
            return candidate
    if apt and shutil.which("apt-get"):
        package = f"python{minor}"
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        known = subprocess.run(["apt-cache", "show", f"{package}-venv"], capture_output=True)
        if known.returncode == 0:
            print(f"no Python {minor} found; installing Debian's {package} and {package}-venv")
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", package, f"{package}-venv"], check=False
            )
            for candidate in python_candidates(minor, dict(os.environ)):
                if working_python(candidate, minor):
                    return candidate
        else:
            print(f"Debian's package lists here have no {package}-venv.")
    raise ParityError(
        f"no working Python {minor} (Colab's) with the venv module; tried: "
        + (", ".join(candidates) or "nothing found")
        + f". Install one (`pyenv install {minor}`, or on Debian 13 / Ubuntu 24.04 "
        f"`apt-get install python{minor} python{minor}-venv`) or point COLAB_PYTHON at it."
    )


# ------------------------------------------------------------------ the environment
def run_logged(cmd: list[str], log: Path, what: str, **kwargs) -> None:
    """Run ``cmd``, appending its output to ``log``; on failure show its last lines."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kwargs)
    if done.returncode != 0:
        lines = [
            line
            for line in log.read_text(encoding="utf-8").splitlines()
            if "is ignored: it is neither a file nor a directory" not in line
        ]
        raise ParityError(
            f"{what} failed (exit status {done.returncode}); the end of {log}:\n"
            + "\n".join(lines[-40:])
        )


def installed(venv_python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(venv_python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {canonicalize_name(p["name"]): p["version"] for p in json.loads(out.stdout)}


def build_environment(
    venv: Path, python: str, colab: dict[str, tuple[str, str]], names: list[str], fresh: bool
) -> tuple[dict[str, str], bool]:
    """Colab's versions of ``names`` (and their dependencies) in ``venv``; its package list.

    Returns the packages and whether a cached environment was reused.
    """
    constraints = "".join(f"{name}=={version}\n" for name, version in sorted(colab.values()))
    python_version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    key = hashlib.sha256(
        json.dumps([CACHE_FORMAT, constraints, python, python_version, names]).encode()
    ).hexdigest()
    stamp = venv / "colab-parity.json"
    venv_python = venv / "bin" / "python"
    if not fresh and stamp.is_file() and venv_python.exists():
        saved = json.loads(stamp.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            subprocess.run(
                [str(venv_python), "-m", "pip", "uninstall", "-y", "-q", "kdlib"],
                capture_output=True,
            )
            if installed(venv_python) == saved["packages"]:
                return saved["packages"], True
            print("  the cached environment was changed by an earlier run: rebuilding it")
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "colab-venv.log"
    log.write_text("", encoding="utf-8")
    run_logged([python, "-m", "venv", str(venv)], log, f"creating a virtualenv with {python}")
    (venv / "colab-constraints.txt").write_text(constraints, encoding="utf-8")
    # --no-compile: byte-compiling TensorFlow's ~10,000 modules up front costs a minute of CPU;
    # Python compiles what the tests import, when they import it.
    pip = [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    pip.append("--no-compile")
    colab_pip = colab.get("pip", ("pip", None))[1]
    if colab_pip:
        run_logged(pip + [f"pip=={colab_pip}"], log, f"installing Colab's pip {colab_pip}")
    run_logged(
        pip + ["-c", str(venv / "colab-constraints.txt"), *names],
        log,
        "installing Colab's versions of " + ", ".join(names),
    )
    packages = installed(venv_python)
    stamp.write_text(json.dumps({"key": key, "packages": packages}, indent=1), encoding="utf-8")
    return packages, False


# ------------------------------------------------------------------ the set-up cell
def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def run_setup_cell(venv_python: Path, source: str, workdir: Path) -> str:
    """Run the set-up cell's code in the Colab environment with a stand-in google.colab."""
    stand_in = workdir / "stand-in"
    for relative, text in STAND_IN_COLAB.items():
        path = stand_in / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    cell = workdir / "setup_cell.py"
    cell.write_text(source + "\n", encoding="utf-8")
    env = clean_env(venv_python)
    env["PYTHONPATH"] = str(stand_in)
    done = subprocess.run(
        [str(venv_python), str(cell)], cwd=workdir, env=env, capture_output=True, text=True
    )
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise ParityError(f"the Colab set-up cell failed in Colab's environment:\n{output}")
    return done.stdout.strip()


def clean_env(venv_python: Path) -> dict[str, str]:
    """The environment for the Colab side: nothing that points back at the clone."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PATH"] = f"{venv_python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["KDLIB_FAST"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["MPLBACKEND"] = "Agg"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger note on Python 3.13
    if not env.get("KDLIB_DATA_DIR"):
        for folder in DATA_CANDIDATES:
            if (folder / "mnist.npz").is_file():
                env["KDLIB_DATA_DIR"] = str(folder.resolve())
                break
    return env


def export_commit(commit: str, target: Path) -> None:
    """The files of ``commit`` in ``target``, without kdlib/ (only the installed one remains)."""
    target.mkdir(parents=True)
    archive = target.parent / "commit.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", commit], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:  # Python before 3.10.12: a git archive of our own commit is trusted
            tar.extractall(target)
    archive.unlink()
    shutil.rmtree(target / "kdlib")


def pytest_in(venv_python: Path, workdir: Path, args: list[str], what: str) -> None:
    cmd = [str(venv_python), "-m", "pytest", "-p", "no:cacheprovider", *args]
    print(
        f"$ (in a copy of the commit without kdlib/) python -m pytest {' '.join(args)}", flush=True
    )
    done = subprocess.run(cmd, cwd=workdir, env=clean_env(venv_python))
    if done.returncode != 0:
        raise ParityError(
            f"{what} failed in Colab's environment (pytest exit status {done.returncode})."
        )


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:  # noqa: C901 - the steps of one run, in order
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--freeze", help="Colab's pip-freeze.txt (default $COLAB_FREEZE, else ../shared/colab/)"
    )
    parser.add_argument("--venv", default=str(ROOT / "build" / "colab-venv"))
    parser.add_argument("--fresh", action="store_true", help="rebuild the environment")
    parser.add_argument("--apt", action="store_true", help="install Debian's python3.13 if none")
    args = parser.parse_args(argv)
    start = time.monotonic()

    freeze = find_freeze(args.freeze)
    colab = parse_freeze(freeze.read_text(encoding="utf-8"))
    os_info = freeze.with_name("os-info.txt")
    minor = python_minor(os_info.read_text(encoding="utf-8")) if os_info.is_file() else "3.13"
    print(f"== Colab's runtime: {freeze} ({len(colab)} pinned packages), Python {minor}")

    with open(ROOT / "pyproject.toml", "rb") as f:
        pyproject = tomllib.load(f)
    reqs = requirements(pyproject)
    bounds = check_bounds(reqs, colab, minor)
    print("== pyproject.toml's bounds against Colab's versions")
    for bound in bounds:
        verdict = "admits" if bound.admitted else "EXCLUDES"
        print(f"  {bound.requirement:<28} {verdict} Colab's {bound.colab_version}")
    excluded = [b for b in bounds if not b.admitted]

    python = find_python(minor, args.apt)
    names = base_names(pyproject)
    venv = Path(args.venv).resolve()
    venv_python = venv / "bin" / "python"
    print(f"== Colab's environment in {venv}: {python}, Colab's versions of {', '.join(names)}")
    step = time.monotonic()
    before, reused = build_environment(venv, python, colab, names, args.fresh)
    how = "reused (--fresh rebuilds it)" if reused else "built"
    print(f"  {how} in {time.monotonic() - step:.0f} s: {len(before)} packages")
    not_colab = {
        colab[k][0]: (colab[k][1], v) for k, v in before.items() if k in colab and colab[k][1] != v
    }
    if not_colab:
        raise ParityError(f"the environment does not hold Colab's versions: {not_colab}")

    commit = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        print(f"  NOTE: uncommitted changes are not tested; this tests commit {commit[:12]}")
    sync = _sync_module()
    version = sync.project_version()
    stand_in_url = ROOT.as_uri()
    real = sync.pip_spec(sync.repository_url(), sync.release_tag(version))
    source = sync.setup_source(stand_in_url, version, ref=commit)
    print("== the notebooks' Colab set-up cell, in Colab's environment")
    print(f"  the cell of scripts/sync_notebooks.py with {sync.pip_spec(stand_in_url, commit)}")
    print(f"  in place of {real}")
    with tempfile.TemporaryDirectory(prefix="kdlib-colab-") as tmp:
        workdir = Path(tmp)
        step = time.monotonic()
        said = run_setup_cell(venv_python, source, workdir)
        print(textwrap.indent(said or "(no output)", "  cell> "))
        print(f"  ran in {time.monotonic() - step:.0f} s")
        after = installed(venv_python)
        result = compare(colab, before, after)
        ipywidgets = after.get("ipywidgets", "")
        wants_manager = bool(ipywidgets) and Version(ipywidgets).major >= 8
        if wants_manager != (WIDGET_MANAGER_CALLED in said):
            raise ParityError(
                f"with ipywidgets {ipywidgets} the set-up cell should "
                f"{'' if wants_manager else 'not '}enable Colab's custom widget manager."
            )
        print(f"== Colab's packages after installing kdlib ({len(result.checked)} checked)")
        print(wrap([f"{n} {v}" for n, v in result.checked.items()]))
        if result.added:
            print(
                "  added (not in Colab's list): "
                + ", ".join(f"{n} {v}" for n, v in result.added.items())
            )
        problems = []
        if result.changed:
            problems.append(
                "installing kdlib changed Colab's packages: "
                + ", ".join(f"{n} {a} -> {b or 'removed'}" for n, (a, b) in result.changed.items())
            )
        if excluded:
            problems.append(
                "pyproject.toml excludes Colab's versions: "
                + ", ".join(f"{b.requirement} (Colab: {b.colab_version})" for b in excluded)
            )
        if problems:
            raise ParityError(
                "; ".join(problems) + ". Widen the bounds in pyproject.toml so that Colab's "
                "versions satisfy them."
            )
        print(f"  all {len(result.checked)} unchanged")

        work = workdir / "commit"
        export_commit(commit, work)
        where = subprocess.run(
            [
                str(venv_python),
                "-c",
                "import kdlib; print(kdlib.__file__); print(kdlib.__version__)",
            ],
            cwd=work,
            env=clean_env(venv_python),
            capture_output=True,
            text=True,
        )
        location, _, imported_version = where.stdout.strip().partition("\n")
        if where.returncode != 0 or not Path(location).resolve().is_relative_to(venv):
            raise ParityError(f"kdlib is not imported from {venv}: {where.stdout}{where.stderr}")
        print(f"== kdlib {imported_version} is imported from {location}")
        step = time.monotonic()
        pytest_in(venv_python, work, ["-q", WIDGET_TESTS], "the widget tests")
        print(f"  widget tests: {time.monotonic() - step:.0f} s")
        notebooks = sorted(p.name for p in (work / "notebooks").glob("*.ipynb"))
        if not notebooks:
            raise ParityError("the commit has no notebooks/*.ipynb to run")
        step = time.monotonic()
        pytest_in(venv_python, work, ["--nbval-lax", "--nbval-current-env", "notebooks/"], "nbval")
        print(f"  notebooks: {time.monotonic() - step:.0f} s")
    print(
        f"test-colab OK: Python {minor}, {len(result.checked)} Colab packages unchanged "
        f"(ipywidgets {ipywidgets}), {WIDGET_TESTS} and {len(notebooks)} notebooks run "
        f"({', '.join(notebooks)}), {time.monotonic() - start:.0f} s in all"
    )
    return 0


def _sync_module():
    sys.path.insert(0, str(ROOT / "scripts"))
    import sync_notebooks

    return sync_notebooks


if __name__ == "__main__":
    sys.exit(main())
