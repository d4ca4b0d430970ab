"""What to start inside an environment: the runtime process's argv and its environment.

Pure functions of the spec and a `Layout` (where things are, as seen from inside the environment):
the namespace backend uses AWS's paths (/var/task, /opt, /var/lang, /var/runtime); the process
backend points the same names at host directories.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))   # this package: bootstraps live here
RUNTIME_FILES = ("python_bootstrap.py", "node_bootstrap.js", "node_path_esm.js")   # an environment's /var/runtime


@dataclass(frozen=True)
class Layout:
    task_root: str = "/var/task"
    opt_root: str = "/opt"
    runtime_dir: str = "/var/runtime"
    lang_root: str = "/var/lang"         # python prefix
    python_exe: str = "/var/lang/bin/python3"
    node_exe: str = "/var/lang/bin/node"   # the runtime's node: its prefix is bound at /var/lang


def family(runtime: str) -> str:
    for prefix in ("python", "nodejs", "provided"):
        if runtime.startswith(prefix):
            return prefix
    raise ValueError(f"unsupported runtime {runtime!r}")


def node_available() -> bool:
    return shutil.which("node") is not None


def runtime_argv(runtime: str, layout: Layout, bootstrap_exists: bool = True) -> list[str]:
    fam = family(runtime)
    if fam == "python":
        # -s: no user site; the interpreter's own site-packages is hidden by the namespace backend
        return [layout.python_exe, "-s", os.path.join(layout.runtime_dir, "python_bootstrap.py")]
    if fam == "nodejs":
        # node_path_esm.js: `import` falls back to NODE_PATH (the layers', the AWS SDK's) as on AWS
        return [layout.node_exe, "--require", os.path.join(layout.runtime_dir, "node_path_esm.js"),
                os.path.join(layout.runtime_dir, "node_bootstrap.js")]
    # provided: /var/task/bootstrap, else /opt/bootstrap (as AWS looks them up)
    task = os.path.join(layout.task_root, "bootstrap")
    return [task if bootstrap_exists else os.path.join(layout.opt_root, "bootstrap")]


def runtime_env(spec, layout: Layout) -> dict[str, str]:
    """Lambda's standard variables; the function's own may not override the reserved ones."""
    fam = family(spec.runtime)
    L, T, P, R = layout.lang_root, layout.task_root, layout.opt_root, layout.runtime_dir
    overridable = {
        "PATH": f"{L}/bin:/usr/local/bin:/usr/bin/:/bin:{P}/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LD_LIBRARY_PATH": f"{L}/lib:/lib64:/usr/lib64:{R}:{R}/lib:{T}:{T}/lib:{P}/lib",
    }
    if fam == "python":
        # AWS's search path: /var/task (the bootstrap puts it first), then a layer's python/lib/pythonX.Y/
        # site-packages and python/ under /opt, then the runtime's own modules.
        ver = spec.runtime[len("python"):]
        overridable["PYTHONPATH"] = f"{P}/python/lib/python{ver}/site-packages:{P}/python:{R}"
    if fam == "nodejs":
        major = spec.runtime[len("nodejs"):].split(".")[0]
        overridable["NODE_PATH"] = f"{P}/nodejs/node{major}/node_modules:{P}/nodejs/node_modules:{R}/node_modules:{R}:{T}"
    reserved = {
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": spec.function_version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group or f"/aws/lambda/{spec.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": spec.log_stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "_HANDLER": spec.handler,
        "LAMBDA_TASK_ROOT": T,
        "LAMBDA_RUNTIME_DIR": R,
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
    }
    if fam == "provided":
        reserved.pop("AWS_EXECUTION_ENV")   # AWS sets none for OS-only runtimes
    if getattr(spec, "log_format", "Text") == "JSON":
        # LoggingConfig: the runtime formats its application logs as JSON and drops those below the level
        reserved["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        reserved["AWS_LAMBDA_LOG_LEVEL"] = spec.app_log_level or "INFO"
    return {**overridable, **spec.env, **reserved}
