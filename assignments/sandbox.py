"""Run students' notebooks in a bubblewrap sandbox when nbgrader autogrades them.

``nbgrader autograde`` executes every submission in a Jupyter kernel. By default that kernel
runs with the instructor's rights: a submission could read the source notebook (solutions and
hidden tests) or the gradebook, delete the course, or reach the network. ``nbgrader_config.py``
(beside this file) replaces nbgrader's ``Execute`` step with :class:`SandboxedExecute`, whose
kernel starts under `bubblewrap <https://github.com/containers/bubblewrap>`_ (Debian's
``bubblewrap`` package, command ``bwrap``). Inside, the student's code

- sees only the files it needs: its own folder (``autograded/<student>/<assignment>/``,
  read-write, where nbgrader has copied the assignment's released files), and read-only the
  Python installation, the ``kdlib`` package, the MNIST file and the system libraries (``/usr``);
  the notebook being graded, which holds the hidden tests, reads as an empty file;
- writes only its own folder and a private ``$TMPDIR`` and ``$HOME`` that vanish with it;
- has no network (a new network namespace with no interface but loopback), no capabilities,
  its own process, IPC and host-name namespaces, and a cleared environment;
- talks to nbgrader through Unix sockets in a private folder (ZeroMQ's ``ipc`` transport),
  the only thing shared with the grader.

:func:`bwrap_command` builds the command line and is tested directly
(``tests/test_assignments.py``); :func:`probe` says clearly when ``bwrap`` is missing or not
allowed to create namespaces.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute

#: Environment variables passed into the sandbox (everything else is cleared).
PASSED_ENV = (
    "PYTHONPATH",
    "KDLIB_FAST",
    "KDLIB_DATA_DIR",
    "KERAS_BACKEND",
    "MPLBACKEND",
    "TF_CPP_MIN_LOG_LEVEL",
    "NBGRADER_EXECUTION",
    "LANG",
    "LC_ALL",
    "TZ",
)
#: The sandbox's temporary folder and home (a tmpfs, gone when the kernel stops); the rest of
#: the sandbox's own file system, ``/tmp`` included, is read-only.
SANDBOX_TMP = "/tmp/sandbox"
SANDBOX_HOME = "/tmp/sandbox/home"
INSTALL_HINT = (
    "Install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf "
    "install bubblewrap`), or grade on a Linux machine that has it. It runs each student's "
    "notebook without access to your files or the network (assignments/README.md)."
)


def _existing(paths: Iterable[str | os.PathLike[str] | None]) -> list[str]:
    """The distinct real paths among ``paths`` that exist, in order."""
    seen: list[str] = []
    for path in paths:
        if path and os.path.exists(path):
            real = os.path.realpath(path)
            if real not in seen:
                seen.append(real)
    return seen


def python_paths() -> list[str]:
    """Read-only folders the kernel's Python needs: the environment and its base install."""
    return _existing([sys.prefix, sys.base_prefix, sys.exec_prefix, Path(sys.executable).parent])


def kdlib_paths() -> list[str]:
    """The ``kdlib`` package the grader would import (only the package, not its repository)."""
    spec = importlib.util.find_spec("kdlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    return _existing(spec.submodule_search_locations)


def mnist_paths(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(path outside, path inside)`` of the MNIST files ``kdlib.data.load_mnist`` may read.

    The same order as ``kdlib.data.candidate_paths``: ``$KDLIB_DATA_DIR``, ``data/`` beside
    the ``kdlib`` package, the Keras cache (mounted in the sandbox's own home).
    """
    found = []
    if env.get("KDLIB_DATA_DIR"):
        found.append(os.path.join(env["KDLIB_DATA_DIR"], "mnist.npz"))
    found += [os.path.join(os.path.dirname(p), "data", "mnist.npz") for p in kdlib_paths()]
    pairs = [(p, p) for p in _existing(found)]
    keras_home = env.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    cache = os.path.join(keras_home, "datasets", "mnist.npz")
    if os.path.exists(cache):
        pairs.append((os.path.realpath(cache), f"{SANDBOX_HOME}/.keras/datasets/mnist.npz"))
    return pairs


_EMPTY: list[str] = []


def empty_file() -> str:
    """A read-only empty file (removed at exit) to mount over the files the sandbox hides."""
    if not _EMPTY:
        handle, path = tempfile.mkstemp(prefix="kd-sandbox-empty-")
        os.close(handle)
        os.chmod(path, 0o444)
        atexit.register(os.remove, path)
        _EMPTY.append(path)
    return _EMPTY[0]


def system_mounts() -> list[str]:
    """bwrap arguments for the system's libraries: ``/usr`` and its links, a few ``/etc`` files."""
    cmd = ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        target = Path("/") / link
        if target.is_symlink():
            cmd += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            cmd += ["--ro-bind", str(target), str(target)]
    for etc in ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives"):
        cmd += ["--ro-bind-try", etc, etc]
    return cmd


def bwrap_command(
    argv: list[str],
    workdir: str | os.PathLike[str],
    *,
    env: Mapping[str, str],
    read_only: Iterable[str] = (),
    read_write: Iterable[str] = (),
    mounts: Iterable[tuple[str, str]] = (),
    hidden: Iterable[str] = (),
) -> list[str]:
    """The command that runs ``argv`` in ``workdir`` inside a bubblewrap sandbox.

    Parameters
    ----------
    argv
        The program and its arguments (e.g. the kernel's command line).
    workdir
        The only persistent folder the program may write; also its working directory.
    env
        The environment to take :data:`PASSED_ENV` from; everything else is cleared.
    read_only, read_write
        More folders or files to mount at the same path (e.g. the kernel's socket folder).
    mounts
        ``(outside, inside)`` files or folders to mount read-only at another path.
    hidden
        Files inside the mounted folders to replace with an empty file (:func:`empty_file`).
    """
    workdir = os.path.realpath(workdir)
    cmd = [
        "bwrap",
        "--unshare-all",  # user, PID, network, IPC, UTS and cgroup namespaces
        "--die-with-parent",
        "--cap-drop", "ALL",
        "--uid", "65534", "--gid", "65534",  # nobody inside
    ]  # fmt: skip
    cmd += system_mounts()
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    cmd += ["--tmpfs", SANDBOX_TMP, "--dir", SANDBOX_HOME]
    cmd += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    for path in _existing(read_only):
        cmd += ["--ro-bind", path, path]
    for outside, inside in mounts:
        cmd += ["--ro-bind", outside, inside]
    for path in _existing([workdir, *read_write]):
        cmd += ["--bind", path, path]
    for path in _existing(hidden):
        cmd += ["--ro-bind", empty_file(), path]
    # Folders bwrap created to hold the mounts stay empty and read-only.
    cmd += ["--remount-ro", "/tmp", "--remount-ro", "/"]
    python_bins = [os.path.join(p, "bin") for p in python_paths()]
    cmd += ["--chdir", workdir, "--clearenv"]
    cmd += ["--setenv", "HOME", SANDBOX_HOME, "--setenv", "TMPDIR", SANDBOX_TMP]
    cmd += ["--setenv", "PATH", os.pathsep.join([*python_bins, "/usr/bin", "/bin"])]
    cmd += ["--setenv", "MPLCONFIGDIR", f"{SANDBOX_HOME}/.matplotlib"]
    for name in PASSED_ENV:
        if env.get(name):
            cmd += ["--setenv", name, env[name]]
    return [*cmd, "--", *argv]


def kernel_command(argv: list[str], workdir: str, socket_dir: str, env: Mapping[str, str]):
    """:func:`bwrap_command` for a Jupyter kernel: Python, kdlib and MNIST readable."""
    workdir = os.path.realpath(workdir)
    notebooks = [str(p) for p in Path(workdir).glob("*.ipynb")]
    return bwrap_command(
        argv,
        workdir,
        env=env,
        read_only=[*python_paths(), *kdlib_paths()],
        read_write=[socket_dir],
        mounts=mnist_paths(env),
        hidden=notebooks,
    )


_PROBED: list[str] = []


def probe() -> None:
    """Raise a ``RuntimeError`` that says what to do if bubblewrap cannot run here."""
    if _PROBED:
        return
    if shutil.which("bwrap") is None:
        raise RuntimeError(f"nbgrader: bubblewrap (`bwrap`) is not installed. {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="kd-probe-") as folder:
        cmd = bwrap_command(["/usr/bin/true"], folder, env={})
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"nbgrader: bubblewrap cannot create its sandbox here (exit status "
            f"{done.returncode}: {done.stderr.strip()}). Unprivileged user namespaces may be "
            "disabled (Ubuntu 24.04: an AppArmor profile for bwrap; Debian: "
            "`sysctl kernel.unprivileged_userns_clone=1`), or grade as root. " + INSTALL_HINT
        )
    _PROBED.append("ok")


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start inside :func:`kernel_command`'s sandbox."""

    _socket_dir: str | None = None

    async def _async_pre_start_kernel(self, **kw):  # type: ignore[override]
        probe()
        if self._socket_dir is None:
            # ZeroMQ over Unix sockets in a private folder: the sandbox has no network.
            self._socket_dir = tempfile.mkdtemp(prefix="kd-kernel-")
            self.transport = "ipc"
            self.ip = os.path.join(self._socket_dir, "kernel-ipc")
            self.connection_file = os.path.join(self._socket_dir, "kernel.json")
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        workdir = kw.get("cwd") or os.getcwd()
        env = kw.get("env") or dict(os.environ)
        kernel_cmd = kernel_command(kernel_cmd, workdir, self._socket_dir, env)
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return kernel_cmd, kw

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None


class SandboxedExecute(Execute):
    """nbgrader's ``Execute`` step with :class:`SandboxKernelManager`'s kernels."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)


def autograde_preprocessors(default: list) -> list:
    """``Autograde.autograde_preprocessors`` with ``Execute`` replaced by the sandboxed one."""
    return [SandboxedExecute if step is Execute else step for step in default]
