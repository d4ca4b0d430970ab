"""The AWS SDK for Python (boto3, botocore and their dependencies) in the forked Python runtime.

Where it is: `make install` provisions it per Python version into <runtimes_dir>/python-sdk/X.Y
(pysdk_provision.py); the namespace backend binds that directory read-only at
/var/lang/lib/pythonX.Y/site-packages, the last entry of the runtime's sys.path: after /var/task, the
layers' /opt/python/lib/pythonX.Y/site-packages and /opt/python, and /var/runtime, so a function or
layer that brings its own boto3 gets its own, as on AWS.

Why it is pre-imported: `import boto3` costs ~140 ms of CPU and the first two clients ~90 ms more
(the models are gzipped JSON). The fork server (sandbox/zygote.py) imports the SDK once, under the
names it has inside (its host directory is read through a finder that names every module, code
object and package path by the inside path), and reads ahead the models botocore loads to create the
clients of common services. Each forked runtime then inherits that, copy-on-write.

What is tenant-specific stays out: no botocore Session, client, credential or configuration exists in
the fork server (only modules and parsed model files, whose file names are translated to the inside
ones); the environment is read by botocore when the function creates its session, as in a fresh
interpreter. The few values botocore computes from the home directory at import time are computed
under a placeholder home and rewritten with the tenant's own once its environment is set.

When the function would import something else: before the handler is imported, for_tenant() looks in
the tenant's own path entries (the handler's directory, /var/task, PYTHONPATH: the layers) for any
top-level module the pre-import brought in or looked for and did not find (awscrt, certifi...). If one
is there, every module the pre-import added is dropped (the interpreter is as before it) and the
function's imports resolve afresh, exactly as in a new interpreter.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import sys
import types
import warnings

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
INNER = f"/var/lang/lib/python{VERSION}/site-packages"     # where the namespace backend binds the SDK
# Imported by boto3 only on a first client or resource: imported ahead as well.
LAZY_MODULES = ("boto3.session", "botocore.session", "botocore.client", "boto3.s3.inject", "boto3.s3.transfer",
                "boto3.dynamodb.conditions", "boto3.dynamodb.transform", "boto3.dynamodb.types",
                "s3transfer.subscribers")
WARM_SERVICES = ("lambda", "sqs", "sts", "s3", "dynamodb", "logs", "kms", "secretsmanager", "ssm", "sns")
WARM_DATA = ("endpoints", "partitions", "sdk-default-configuration")       # loaded by every first client
WARM_TYPES = ("service-2", "endpoint-rule-set-1")                        # per service, per client
_HOME = "/nonexistent/lambdalet-sdk-home"     # HOME while importing: marks the values to recompute per tenant
_SUFFIXES = tuple(importlib.machinery.all_suffixes())


class _Preloaded:
    def __init__(self, names, tops, home_refs, saved_filters, saved_loggers):
        self.names = names                    # every module the pre-import added (the SDK's and stdlib's)
        self.tops = tops                      # top-level names a tenant's path must not offer (see above)
        self.missing = tops - {n.partition(".")[0] for n in names}
        self.home_refs = home_refs            # (holder, attribute, value with _HOME)
        self.saved_filters, self.saved_loggers = saved_filters, saved_loggers


_loaded: _Preloaded | None = None


def loaded_names() -> frozenset[str]:
    return _loaded.names if _loaded is not None else frozenset()


class _InsideNames:
    """Meta path finder (fork server only): the SDK's modules from its host directory, named as inside."""

    def __init__(self, host: str, inner: str):
        self.host, self.inner = host, inner
        self.tops = {n[:-3] if n.endswith(".py") else n for n in os.listdir(host)
                     if n.endswith(".py") or os.path.isfile(os.path.join(host, n, "__init__.py"))}
        self.asked: set[str] = set()

    def to_host(self, path: str) -> str:
        return self.host + path[len(self.inner):] if path.startswith(self.inner + "/") else path

    def find_spec(self, fullname, path=None, target=None):
        self.asked.add(fullname.partition(".")[0])
        if fullname.partition(".")[0] not in self.tops:
            return None
        rel = fullname.replace(".", "/")
        if os.path.isfile(f"{self.host}/{rel}/__init__.py"):
            inner, locations = f"{self.inner}/{rel}/__init__.py", [f"{self.inner}/{rel}"]
        elif os.path.isfile(f"{self.host}/{rel}.py"):
            inner, locations = f"{self.inner}/{rel}.py", None
        else:
            return None
        return importlib.util.spec_from_file_location(fullname, inner, loader=_HostLoader(fullname, inner, self),
                                                      submodule_search_locations=locations)


class _HostLoader(importlib.machinery.SourceFileLoader):
    """Reads the source and bytecode from the host directory; everything is named by the inside path
    (importlib also gives the code objects that file name)."""

    def __init__(self, fullname, path, finder):
        super().__init__(fullname, path)
        self._to_host = finder.to_host

    def get_data(self, path):
        return super().get_data(self._to_host(path))

    def path_stats(self, path):
        return super().path_stats(self._to_host(path))

    def set_data(self, *args, **kwargs):
        pass                                  # never write bytecode into the SDK


def preload(host_dir: str) -> None:
    """Fork server only, before pyfork.prepare(): import the SDK and read its common models ahead."""
    global _loaded
    before = set(sys.modules)
    filters, loggers = list(warnings.filters), set(logging.Logger.manager.loggerDict)
    finder = _InsideNames(host_dir, INNER)
    home = os.environ.get("HOME")
    os.environ["HOME"] = _HOME
    sys.meta_path.insert(0, finder)
    try:
        import boto3  # noqa: F401
        for name in LAZY_MODULES:
            __import__(name)
        warm = _read_models_ahead(host_dir)
    except BaseException:
        _drop(set(sys.modules) - before, filters, loggers)
        raise
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home
    _install_warm_loader(warm)
    names = frozenset(set(sys.modules) - before)
    for name in names:                        # the fork server's finder must not outlive it
        m = sys.modules[name]
        if isinstance(getattr(m, "__loader__", None), _HostLoader):
            m.__loader__ = m.__spec__.loader = importlib.machinery.SourceFileLoader(name, m.__file__)
    tops = frozenset(finder.asked | {n.partition(".")[0] for n in names})
    _loaded = _Preloaded(names, tops, _home_refs(names), filters, loggers)


def _read_models_ahead(host_dir: str) -> dict:
    """What a default botocore Loader caches when the clients of WARM_SERVICES are made, with the file
    paths it records translated to the inside ones."""
    from botocore import loaders
    loader = loaders.Loader(extra_search_paths=[f"{host_dir}/botocore/data", f"{host_dir}/boto3/data"],
                            include_default_search_paths=False)
    for name in WARM_DATA:
        loader.load_data(name)
    for service in WARM_SERVICES:
        for type_name in WARM_TYPES:
            loader.load_service_model(service, type_name, api_version=None)
    def inside(v):
        return INNER + v[len(host_dir):] if isinstance(v, str) and v.startswith(host_dir + "/") else v
    return {k: tuple(map(inside, v)) if isinstance(v, tuple) else v for k, v in loader._cache.items()}


# botocore's sessions create their loader through this name: a default loader (no AWS_DATA_PATH, no
# ~/.aws/models) starts with the models read ahead. Compiled here so it names no host file.
_WARM_LOADER_SOURCE = """
def create_loader(search_path_string=None):
    loader = _create_loader(search_path_string)
    if search_path_string is None and not _isdir(loader.CUSTOMER_DATA_PATH):
        loader._cache.update(_WARM)
    return loader
"""


def _install_warm_loader(warm: dict) -> None:
    import botocore.loaders
    import botocore.session
    ns = {"_create_loader": botocore.loaders.create_loader, "_WARM": warm, "_isdir": os.path.isdir}
    exec(compile(_WARM_LOADER_SOURCE, "<botocore models read ahead>", "exec"), ns)
    ns["create_loader"].__module__ = "botocore.loaders"
    botocore.session.create_loader = ns["create_loader"]


def _home_refs(names) -> list:
    """Module globals, class attributes and default arguments computed from the placeholder home."""
    refs = []

    def scan(holder, module_name: str) -> None:
        for k, v in list(vars(holder).items()):
            if isinstance(v, str) and _HOME in v:
                refs.append((holder, k, v))
            elif isinstance(v, types.FunctionType) and v.__defaults__ and \
                    any(isinstance(d, str) and _HOME in d for d in v.__defaults__):
                refs.append((v, "__defaults__", v.__defaults__))
            elif isinstance(v, type) and isinstance(holder, types.ModuleType) and v.__module__ == module_name:
                scan(v, module_name)

    for name in names:
        scan(sys.modules[name], name)
    return refs


def for_tenant(task_root: str, handler: str, first_stdlib_entry: str) -> bool:
    """Once the tenant's environment and sys.path are set (pyfork._configure): keep the pre-imported SDK
    (True) or drop it, when the tenant's own path entries would make a fresh interpreter import
    something else."""
    global _loaded
    pre = _loaded
    if pre is None:
        return False
    entries = sys.path[:sys.path.index(first_stdlib_entry)] if first_stdlib_entry in sys.path else list(sys.path)
    modname = handler.rpartition(".")[0]
    entries = ([os.path.join(task_root, os.path.dirname(modname))] if "/" in modname else []) + [task_root] + entries
    if any(_offers(entry, pre) for entry in entries):
        _drop(pre.names, pre.saved_filters, pre.saved_loggers)
        _loaded = None
        return False
    home = os.path.expanduser("~")
    for holder, attr, value in pre.home_refs:
        if attr == "__defaults__":
            setattr(holder, attr, tuple(d.replace(_HOME, home) if isinstance(d, str) else d for d in value))
        else:
            setattr(holder, attr, value.replace(_HOME, home))
    return True


def _offers(entry: str, pre: _Preloaded) -> bool:
    try:
        listing = os.listdir(entry)
    except OSError:
        return False
    for name in listing:
        stem, dot, rest = name.partition(".")
        if stem not in pre.tops:
            continue
        if dot:
            if "." + rest in _SUFFIXES:
                return True
        elif os.path.isdir(os.path.join(entry, name)):
            # A plain directory is a namespace portion: it loses to a regular package further on,
            # but makes a module that was not found importable.
            if stem in pre.missing or any(os.path.isfile(os.path.join(entry, name, "__init__" + s)) for s in _SUFFIXES):
                return True
    return False


def _drop(names, saved_filters, saved_loggers) -> None:
    """The interpreter as it was before the pre-import: its modules, warning filters, loggers, finders."""
    for name in names:
        sys.modules.pop(name, None)
    warnings.filters[:] = saved_filters
    warnings._filters_mutated()
    for name in set(logging.Logger.manager.loggerDict) - saved_loggers:
        del logging.Logger.manager.loggerDict[name]
    sys.meta_path[:] = [f for f in sys.meta_path if isinstance(f, _InsideNames)
                        or getattr(f, "__module__", type(f).__module__) in sys.modules]   # six's importer goes
    sys.path_importer_cache.clear()
