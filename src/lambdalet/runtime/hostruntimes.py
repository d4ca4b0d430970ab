"""Which catalogue runtimes THIS host can actually execute, and with which interpreter (server side).

The catalogue (services/runtimes.py) says what AWS accepts; this says what lambdalet can run here:
- pythonX.Y: an interpreter of exactly that version: the server's own (forked from init, pyfork.py),
  else a configured path, /usr/bin/pythonX.Y, /usr/local/bin/pythonX.Y, pyenv's versions/X.Y.*;
- nodejsNN.x: a node of that major: provisioned under the runtimes dir (`make install` puts the npm
  packages node-linux-<arch>@22 and @24 in <runtimes_dir>/node22, node24), a configured path, or
  `node` on PATH;
- provided.*: always (the function brings its own bootstrap).
A Python runtime also carries the AWS SDK for Python when `make install` provisioned it in
<runtimes_dir>/python-sdk/X.Y (pysdk_provision.py): bound read-only at the interpreter's
site-packages inside (runtime/pysdk.py), where an exec'd interpreter finds it too. A Node.js runtime
carries the AWS SDK for JavaScript v3 from <runtimes_dir>/node-sdk/<major> (nodesdk.py), bound
read-only at /var/runtime/node_modules as on AWS.
An executor's prefix is bound at /var/lang by the namespace backend; the interpreter runs as
/var/lang/<its path below the prefix>.
"""
from __future__ import annotations

import dataclasses
import errno
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lambdalet.runtime import nodesdk
from lambdalet.runtime.hostarch import HostArchitectures, detect as detect_architectures

PYENV_ROOT = os.environ.get("PYENV_ROOT") or "/root/.pyenv"


@dataclass(frozen=True)
class Executor:
    runtime: str
    exe: str              # host path of the interpreter ("" for provided.*)
    prefix: str           # host directory bound at /var/lang ("" for provided.*)
    version: str          # "3.12.1", "v22.23.3", ""
    fork: bool = False    # python only: the server's own interpreter, so init may fork it (pyfork.py)
    sdk_dir: str = ""     # host dir of its AWS SDK (boto3..., or @aws-sdk/* v3), bound at `sdk_inner`
    sdk_version: str = ""  # that SDK's version (boto3's, or the v3 clients')

    @property
    def sdk_inner(self) -> str:
        """Where the SDK is inside: Python's own site-packages (the last sys.path entry); for Node.js
        /var/runtime/node_modules (the last NODE_PATH entry)."""
        if not self.sdk_dir:
            return ""
        if self.runtime.startswith("nodejs"):
            return nodesdk.INNER
        return f"/var/lang/lib/python{self.runtime[len('python'):]}/site-packages"

    @property
    def inner_exe(self) -> str:
        """The interpreter's path inside a namespace environment."""
        return "/var/lang/" + os.path.relpath(self.exe, self.prefix) if self.exe else ""


class HostRuntimes:
    def __init__(self, executors: dict[str, Executor], architectures: HostArchitectures | None = None):
        self._by_id = dict(executors)
        self.architectures = architectures or detect_architectures()   # what `Architectures` may say (hostarch.py)

    def get(self, runtime: str) -> Executor | None:
        return self._by_id.get(runtime)

    def runs(self, runtime: str) -> bool:
        return runtime in self._by_id

    def identifiers(self) -> list[str]:
        return list(self._by_id)

    def executors(self) -> list[Executor]:
        return list(self._by_id.values())

    def forked_python_sdk(self) -> str:
        """The SDK dir of the Python runtime init forks (the fork server pre-imports it), or ""."""
        return next((e.sdk_dir for e in self._by_id.values() if e.fork), "")


def _probe(argv: list[str]) -> str | None:
    # ETXTBSY: an executable just written is "busy" while any process forked meanwhile (another thread
    # of this server) still holds the writer's fd until its own exec; that passes in milliseconds.
    for attempt in range(5):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        except OSError as e:
            if e.errno == errno.ETXTBSY and attempt < 4:
                time.sleep(0.05 * (attempt + 1))
                continue
            return None
        except subprocess.SubprocessError:
            return None
        return out.stdout.strip() if out.returncode == 0 else None
    return None


def _server_python() -> Executor:
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefix = os.path.realpath(sys.base_prefix)
    return Executor(f"python{ver}", os.path.join(prefix, "bin", f"python{ver}"), prefix,
                    ".".join(map(str, sys.version_info[:3])), fork=True)


def python_executor(runtime: str, candidates: list[str]) -> Executor | None:
    """The first candidate that really is Python X.Y (asked, not guessed from its name)."""
    want = runtime[len("python"):]
    for exe in candidates:
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            continue
        out = _probe([exe, "-S", "-c", "import sys;print('%d.%d.%d' % sys.version_info[:3]);print(sys.base_prefix)"])
        if not out or len(out.splitlines()) != 2:
            continue
        full, prefix = out.splitlines()
        prefix = os.path.realpath(prefix)
        inside = os.path.join(prefix, "bin", f"python{want}")
        if full.rsplit(".", 1)[0] == want and os.path.exists(inside):
            return Executor(runtime, inside, prefix, full)
    return None


def python_candidates(version: str, extra: tuple[str, ...] = ()) -> list[str]:
    name = f"python{version}"
    pyenv = sorted(glob.glob(f"{PYENV_ROOT}/versions/{version}.*/bin/{name}"),
                   key=lambda p: [int(x) if x.isdigit() else -1 for x in re.split(r"[.]", p.split("/")[-3])],
                   reverse=True)
    return [p for p in extra if "python" in os.path.basename(p)] + [f"/usr/bin/{name}", f"/usr/local/bin/{name}"] + pyenv


def node_executor(runtime: str, candidates: list[str]) -> Executor | None:
    major = runtime[len("nodejs"):].split(".")[0]
    for exe in candidates:
        if not (exe and os.path.isfile(exe) and os.access(exe, os.X_OK)):
            continue
        real = os.path.realpath(exe)
        ver = _probe([real, "--version"])
        if ver and ver.lstrip("v").split(".")[0] == major:
            return Executor(runtime, real, os.path.dirname(os.path.dirname(real)), ver)
    return None


def node_candidates(major: str, runtimes_dir: Path | None, extra: tuple[str, ...] = ()) -> list[str]:
    found: list[str] = []
    if runtimes_dir:
        base = Path(runtimes_dir) / f"node{major}"
        found += sorted(glob.glob(str(base / "node_modules" / "node-linux-*" / "bin" / "node")))
        found.append(str(base / "bin" / "node"))           # a plain nodejs.org tarball, unpacked
    found += [p for p in extra if os.path.basename(p) == "node"]
    return found + [shutil.which("node") or ""]


def discover(runtimes: list[str], *, runtimes_dir: Path | None = None,
             interpreters: tuple[str, ...] = ()) -> HostRuntimes:
    """runtimes: the catalogue identifiers lambdalet has a managed runtime for (lambdalet_runs)."""
    own = _server_python()
    found: dict[str, Executor] = {}
    for rid in runtimes:
        ex: Executor | None = None
        if rid.startswith("provided"):
            ex = Executor(rid, "", "", "")
        elif rid == own.runtime:
            ex = own
        elif re.fullmatch(r"python3\.\d+", rid):
            ex = python_executor(rid, python_candidates(rid[len("python"):], interpreters))
        elif re.fullmatch(r"nodejs\d+\.x", rid):
            ex = node_executor(rid, node_candidates(rid[len("nodejs"):].split(".")[0], runtimes_dir, interpreters))
        if ex is not None and rid.startswith("python"):
            ex = with_sdk(ex, runtimes_dir)
        elif ex is not None and rid.startswith("nodejs"):
            ex = with_node_sdk(ex, runtimes_dir)
        if ex is not None:
            found[rid] = ex
    return HostRuntimes(found)


def with_sdk(ex: Executor, runtimes_dir: Path | None) -> Executor:
    """The executor with its provisioned SDK, if there is one and its interpreter has a site-packages dir
    to bind it on (every CPython built with the default layout does)."""
    ver = ex.runtime[len("python"):]
    sdk = Path(runtimes_dir) / "python-sdk" / ver if runtimes_dir else None
    if sdk is None or not (sdk / "boto3" / "__init__.py").is_file() \
            or not os.path.isdir(os.path.join(ex.prefix, "lib", f"python{ver}", "site-packages")):
        return ex
    versions = [p.name[len("boto3-"):-len(".dist-info")] for p in sdk.glob("boto3-*.dist-info")]
    return dataclasses.replace(ex, sdk_dir=str(sdk.resolve()), sdk_version=versions[0] if versions else "?")


def with_node_sdk(ex: Executor, runtimes_dir: Path | None) -> Executor:
    """The executor with the AWS SDK for JavaScript provisioned for its node major, if there is one."""
    got = nodesdk.provisioned(runtimes_dir, ex.runtime[len("nodejs"):].split(".")[0])
    return dataclasses.replace(ex, sdk_dir=got[0], sdk_version=got[1]) if got else ex


def default_runtimes_dir() -> Path | None:
    """<repo>/.venv/runtimes when lambdalet runs from a source checkout that `make install` provisioned."""
    for base in (Path(sys.prefix), Path(__file__).resolve().parents[3] / ".venv"):
        if (base / "runtimes").is_dir():
            return base / "runtimes"
    return None


# The catalogue's data file (read as a whole by services/runtimes.py); the host side reads only its
# lambdalet_runs flags, so that sandbox/ and config.py reach no control-plane code through here.
CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "data" / "runtimes.json"


def managed_runtimes(path: Path = CATALOGUE_PATH) -> list[str]:
    """The catalogue's runtimes lambdalet has a managed runtime for (`lambdalet_runs`)."""
    return [r["identifier"] for r in json.loads(path.read_text())["runtimes"] if r.get("lambdalet_runs")]


def discover_managed(*, runtimes_dir: Path | None = None, interpreters: tuple[str, ...] = ()) -> HostRuntimes:
    """`discover` over every runtime lambdalet has a managed runtime for (the catalogue's
    lambdalet_runs), with the provisioned runtimes dir defaulting to <repo>/.venv/runtimes."""
    return discover(managed_runtimes(), runtimes_dir=runtimes_dir or default_runtimes_dir(),
                    interpreters=interpreters)
