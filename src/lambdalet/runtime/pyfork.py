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
LAMBDA_TASK_ROOT first), sys.executable/prefix/argv, cwd, fds 0-2 and one socket to the Runtime API (its
invocation channel to init, fd 3: pychannel.py; an exec'd runtime holds its HTTP connection), only standard
library modules imported (no lambdalet module, nothing the host venv's .pth files loaded). What
cannot be reset: the str hash seed is the fork server's (shared by the Python environments of one
server, as with Lambda SnapStart), and the pre-imported stdlib modules keep their host file names
(their packages' __path__ lists the stdlib inside first, so their submodules import; see prepare()).

Slots (sandbox/slots.py): a pre-isolated slot's init forks the runtime BEFORE any tenant exists
(prespawn): the child resets the interpreter (its channel to init made before the fork), runs the claim's
code paths once on placeholder data (_warm_up) and blocks on a pipe; when the slot is claimed, init
writes the argv, cwd and environment there (release) and the child finishes what spawn does. Nothing
of the reset depends on the tenant, and the warm-up's state is all replaced, so the result is the same.

Threads: init forks once its two HTTP servers are up; their threads are parked in select(), holding
no lock the child could need (CPython re-initialises the GIL, import lock and threading state in the
child, and the child never touches those servers). `exec` stays for every other runtime and for
`provided` bootstraps (awslambdaric included).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys

from lambdalet.runtime import pysdk, python_bootstrap   # noqa: F401  (imported here so the fork server has it)

BOOTSTRAP_MODULE = "lambdalet.runtime.python_bootstrap"
_STDLIB = os.path.dirname(os.__file__) + os.sep   # the host's stdlib dir (mounted as /var/lang/lib/python3.X)
_HOST_LC_CTYPE = os.environ.get("LC_CTYPE")       # what the interpreter's locale coercion set (C.UTF-8)
_INNER_STDLIB = f"/var/lang/lib/python{sys.version_info.major}.{sys.version_info.minor}/"   # the same, inside
_FOREIGN: list[str] = []                          # non-stdlib modules, listed once by prepare()
_SEEN = -1


def _foreign() -> list[str]:
    """Modules an exec'd runtime would not have: all but the stdlib's and the pre-imported SDK's (pysdk.py)."""
    sdk = pysdk.loaded_names()
    return [n for n, m in list(sys.modules.items())
            if not getattr(m, "__file__", _STDLIB).startswith(_STDLIB) and n not in sdk]


def prepare() -> None:
    """Called by the fork server once everything is imported. Walking every module in each child
    would write to ~250 shared pages (refcounts): ~1 ms of copy-on-write faults per cold start."""
    global _FOREIGN, _SEEN
    _FOREIGN, _SEEN = _foreign(), len(sys.modules)
    # The pre-imported stdlib packages were found in the host's stdlib, which is not there inside: their
    # not yet imported submodules (`import urllib.request`, `importlib.metadata`, a codec like cp437)
    # would not be found. Their __path__ gets the stdlib as mounted inside first, here, once: rewritten
    # in each child instead, the lists' pages would be copied on every cold start (~0.15 ms). Outside,
    # that entry does not exist and the import system skips it.
    for m in list(sys.modules.values()):
        paths = getattr(m, "__path__", None)
        if type(paths) is list and paths and paths[0].startswith(_STDLIB):
            paths[:0] = [_INNER_STDLIB + p[len(_STDLIB):] for p in paths if p.startswith(_STDLIB)]


def spawn(argv: list[str], cwd: str, env: dict[str, str], stdin_fd: int, out_fd: int, chan_fd: int) -> int:
    """Fork the runtime; the child becomes the Python runtime and never returns. argv is the one
    launch.py made ([python_exe, "-s", ".../python_bootstrap.py"]): the names it should look like.
    chan_fd: the runtime's end of init's invocation channel (runtime/pychannel.py), its fd 3."""
    pid = os.fork()
    if pid:
        return pid

    def become() -> None:
        _stdio(stdin_fd, out_fd, keep=chan_fd)
        _reset_interpreter()
        _configure(argv, cwd, env)
        _sdk_for_tenant()
        boot = sys.modules["__main__"]
        boot.main(boot._Channel(socket.socket(fileno=3), os.environ.get("AWS_LAMBDA_RUNTIME_API", "")))

    _run(become)


def prespawn(stdin_fd: int, out_fd: int, chan_fd: int) -> tuple[int, int]:
    """Fork the runtime of a slot before its tenant is known: it resets the interpreter, warms up and
    waits. chan_fd: its end of init's invocation channel. Returns (pid, the fd release() writes its
    configuration to)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(r)
        return pid, w

    def become() -> None:
        os.close(w)
        _stdio(stdin_fd, out_fd, keep=r, keep2=chan_fd)
        _reset_interpreter()
        boot = sys.modules["__main__"]
        _warm_up(boot)
        data = bytearray()
        while chunk := os.read(3, 65536):
            data += chunk
        os.dup2(4, 3)                            # the channel takes fd 3, as in spawn()
        os.close(4)
        if not data:
            os._exit(0)                          # the slot was destroyed unclaimed
        cfg = json.loads(data)
        _configure(cfg["argv"], cfg["cwd"], cfg["env"])
        _sdk_for_tenant()
        boot.main(boot._Channel(socket.socket(fileno=3), os.environ.get("AWS_LAMBDA_RUNTIME_API", "")))

    _run(become)


def _warm_up(boot) -> None:
    """Run, before any tenant, the code the claim will run, on data of no tenant: the first run of a
    path after fork pays its copy-on-write faults (here, ~1 ms), the second does not. Each step's
    state is replaced when the configuration arrives."""
    _configure([f"/var/lang/bin/python{sys.version_info.major}.{sys.version_info.minor}", "-s",
                "/var/runtime/python_bootstrap.py"], "/",
               json.loads(json.dumps({k: "-" for k in _WARM_UP_ENV})))
    boot._setup_io()
    try:
        __import__("lambdalet_warm_up_no_such_module")   # the path finders, on every sys.path entry
    except ImportError:
        pass
    exec(compile(_WARM_UP_SOURCE, "/var/task/warm_up.py", "exec"), {"__name__": "warm_up"})
    warm = boot._Channel(None, "")             # the channel's frame decoding, on an event of no tenant
    head = b"-\0" * 5 + b"-"
    warm.answered, warm.buf = True, bytearray(boot._CHAN_HDR.pack(boot.CHAN_EVENT, len(head), 2) + head + b"{}")
    warm._next_event()


_WARM_UP_SOURCE = "import json\n\n\ndef handler(event, context):\n    return {'ok': event}\n"
_WARM_UP_ENV = ("PATH", "LANG", "TZ", "LD_LIBRARY_PATH", "PYTHONPATH", "AWS_LAMBDA_FUNCTION_NAME",
                "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_LOG_GROUP_NAME",
                "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_INITIALIZATION_TYPE", "_HANDLER", "LAMBDA_TASK_ROOT",
                "LAMBDA_RUNTIME_DIR", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
                "AWS_LAMBDA_RUNTIME_API", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN")


def _sdk_for_tenant() -> None:
    """The pre-imported SDK stays unless the function's own paths bring something it would shadow."""
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    pysdk.for_tenant(os.environ.get("LAMBDA_TASK_ROOT", "/var/task"), os.environ.get("_HANDLER", ""),
                     f"{sys.prefix}/lib/python{ver.replace('.', '')}.zip")


def release(fd: int, argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """Hand a prespawned runtime its configuration (init, once the slot is claimed)."""
    data = memoryview(json.dumps({"argv": argv, "cwd": cwd, "env": env}).encode())
    while data:
        data = data[os.write(fd, data):]
    os.close(fd)


def _stdio(stdin_fd: int, out_fd: int, keep: int, keep2: int = -1) -> None:
    """fds 0-2 as an exec'd runtime has them, and no other but `keep` (moved to 3) and `keep2` (to 4):
    not the bridge socket, init's servers or the log pipe's read end."""
    kept = [fcntl.fcntl(k, fcntl.F_DUPFD, 10) for k in (keep, keep2) if k >= 0]   # out of 0-4's way
    os.dup2(stdin_fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    for i, k in enumerate(kept):
        os.dup2(k, 3 + i)
    os.closerange(3 + len(kept), 65536)


def _run(become) -> None:
    try:
        become()
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


def _reset_interpreter() -> None:
    """What does not depend on the tenant: only standard library modules left (no lambdalet module,
    nothing the host venv's .pth files loaded), the bootstrap as __main__."""
    boot = sys.modules[BOOTSTRAP_MODULE]
    for name in _FOREIGN if len(sys.modules) == _SEEN else _foreign():
        sys.modules.pop(name, None)
    sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__module__", type(f).__module__) in sys.modules]
    sys.modules["__main__"] = boot
    boot.__name__ = "__main__"


def _configure(argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """What the tenant's configuration decides: the environment, cwd, the interpreter's names, its path."""
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
    sys.modules["__main__"].__file__ = script
