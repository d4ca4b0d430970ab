"""Python runtimes without exec: init (PID 1, a fork of the pre-imported fork server) forks the
runtime process from itself and runs python_bootstrap in it, instead of exec'ing a fresh python3.

Why: a new interpreter costs ~25 ms of CPU before the handler is even imported (interpreter start,
site, the bootstrap's imports) and ~6 MiB of private memory; the fork costs ~1 ms and shares every
page the process does not write with init and the fork server.

Isolation is unchanged: the fork happens inside the finished environment (namespaces, cgroup, uid,
no capabilities, no_new_privs, seccomp: all inherited), from init, which never forks another
environment. The memory it copies is the fork server's (modules and compiled seccomp programs only:
the tenant's configuration reaches init over the bridge, after seccomp, never through the fork
server; see sandbox/jail.py) plus this environment's own init. What would tell it apart from an
exec'd `python3 -s /var/runtime/python_bootstrap.py` is reset: os.environ (the function's
environment only), sys.path (the list the exec'd interpreter builds; the bootstrap then puts
LAMBDA_TASK_ROOT first), sys.executable/prefix/argv, cwd, fds 0-2 and no others, and only standard
library modules imported (no lambdalet module, nothing the host venv's .pth files loaded). What
cannot be reset: the str hash seed is the fork server's (shared by the Python environments of one
server, as with Lambda SnapStart), and the pre-imported stdlib modules keep their host file names.

Threads: init forks once its two HTTP servers are up; their threads are parked in select(), holding
no lock the child could need (CPython re-initialises the GIL, import lock and threading state in the
child, and the child never touches those servers). `exec` stays for every other runtime and for
`provided` bootstraps (awslambdaric included).
"""
from __future__ import annotations

import os
import sys

from lambdalet.runtime import python_bootstrap   # noqa: F401  (imported here so the fork server has it)

BOOTSTRAP_MODULE = "lambdalet.runtime.python_bootstrap"
_STDLIB = os.path.dirname(os.__file__) + os.sep   # the host's stdlib dir (mounted as /var/lang/lib/python3.X)
_HOST_LC_CTYPE = os.environ.get("LC_CTYPE")       # what the interpreter's locale coercion set (C.UTF-8)
_FOREIGN: list[str] = []                          # non-stdlib modules, listed once by prepare()
_SEEN = -1


def _foreign() -> list[str]:
    return [n for n, m in list(sys.modules.items()) if not getattr(m, "__file__", _STDLIB).startswith(_STDLIB)]


def prepare() -> None:
    """Called by the fork server once everything is imported. Walking every module in each child
    would write to ~250 shared pages (refcounts): ~1 ms of copy-on-write faults per cold start."""
    global _FOREIGN, _SEEN
    _FOREIGN, _SEEN = _foreign(), len(sys.modules)


def spawn(argv: list[str], cwd: str, env: dict[str, str], stdin_fd: int, out_fd: int) -> int:
    """Fork the runtime; the child becomes the Python runtime and never returns. argv is the one
    launch.py made ([python_exe, "-s", ".../python_bootstrap.py"]): the names it should look like."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.dup2(stdin_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.closerange(3, 65536)                  # the bridge socket, init's servers, the log pipe's read end
        _become_runtime(argv, cwd, env)
        code = 0
    except SystemExit as e:                      # sys.exit(): as the interpreter handles it
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    _exit(code)


def _exit(code: int) -> None:
    """What interpreter shutdown does before exiting: wait for non-daemon threads, run atexit
    handlers, flush stdio; then _exit (nothing else of init's or the fork server's state runs)."""
    import atexit
    import threading
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
        for f in (sys.stdout, sys.stderr):
            f.flush()
    except BaseException:
        pass
    os._exit(code & 0xFF)


def _become_runtime(argv: list[str], cwd: str, env: dict[str, str]) -> None:
    env = dict(env)
    if "LC_ALL" not in env and "LC_CTYPE" not in env and _HOST_LC_CTYPE:
        env["LC_CTYPE"] = _HOST_LC_CTYPE         # an exec'd interpreter coerces the C locale the same way
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    exe, script = argv[0], argv[-1]
    prefix = os.path.dirname(os.path.dirname(exe))      # /var/lang/bin/python3.11 -> /var/lang
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    sys.executable, sys.argv, sys.orig_argv = exe, [script], list(argv)
    sys.prefix = sys.exec_prefix = sys.base_prefix = sys.base_exec_prefix = prefix
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    # What `python3 -s script` builds, minus the script's own directory (the bootstrap drops it):
    # PYTHONPATH, the stdlib zip, the stdlib, lib-dynload, site-packages.
    sys.path[:] = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] + [
        f"{prefix}/lib/python{ver.replace('.', '')}.zip", f"{prefix}/lib/python{ver}",
        f"{prefix}/lib/python{ver}/lib-dynload", f"{prefix}/lib/python{ver}/site-packages"]
    sys.path_importer_cache.clear()              # finders of the host's paths; new ones are made on demand
    boot = sys.modules[BOOTSTRAP_MODULE]
    for name in _FOREIGN if len(sys.modules) == _SEEN else _foreign():
        sys.modules.pop(name, None)
    sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__module__", type(f).__module__) in sys.modules]
    boot.__name__, boot.__file__ = "__main__", script
    sys.modules["__main__"] = boot
    boot.main()
