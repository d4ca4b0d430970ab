"""`make install`'s step for the AWS SDK for JavaScript v3:
`python -m lambdalet.runtime.nodesdk_provision DIR VERSION [nodejsNN.x=VERSION ...]` installs
nodesdk.PACKAGES at VERSION from npm into DIR/node-sdk/<major> for every nodejsNN.x this host runs
(hostruntimes.discover_managed); a `nodejsNN.x=VERSION` item pins that runtime apart, as AWS pins each
runtime's SDK on its own.

npm runs with --ignore-scripts (no package code runs at install) and --omit=dev, into a fresh dir that
replaces the old one only once complete. A runtime already provisioned with the same version and
packages is left alone; a failure (no npm, no network) prints a note and leaves that runtime without an
SDK (its functions must bundle their own, as they would have to on nodejs16.x).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from lambdalet.runtime.hostruntimes import discover_managed
from lambdalet.runtime.nodesdk import MARKER, PACKAGES, sdk_root


def provision(runtimes_dir: Path, version: str, pins: dict[str, str] | None = None) -> int:
    pins = pins or {}
    npm = shutil.which("npm")
    failures = 0
    for rid in discover_managed(runtimes_dir=runtimes_dir).identifiers():
        if not rid.startswith("nodejs"):
            continue
        want = {"version": pins.get(rid, version), "packages": list(PACKAGES)}
        major = rid[len("nodejs"):].split(".")[0]
        target = sdk_root(runtimes_dir, major)
        try:
            if json.loads((target / MARKER).read_text()) == want:
                print(f"{rid}: AWS SDK for JavaScript {want['version']} already in {target}")
                continue
        except (OSError, ValueError):
            pass
        if npm is None:
            print(f"note: npm not found: {rid} functions must bundle their own AWS SDK")
            failures += 1
            continue
        tmp = target.with_name(major + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        argv = [npm, "install", "--prefix", str(tmp), "--no-save", "--ignore-scripts", "--omit=dev", "--no-audit",
                "--no-fund", "--loglevel=error"] + [f"{p}@{want['version']}" for p in PACKAGES]
        got = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if got.returncode:
            why = (got.stderr.strip().splitlines() or ["npm failed"])[-1][:200]
            print(f"note: could not provision the AWS SDK for JavaScript {want['version']} for {rid} ({why}): "
                  "its functions must bundle their own")
            shutil.rmtree(tmp, ignore_errors=True)
            failures += 1
            continue
        (tmp / MARKER).write_text(json.dumps(want))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        print(f"{rid}: AWS SDK for JavaScript {want['version']} in {target}")
    return failures


if __name__ == "__main__":
    provision(Path(sys.argv[1]), sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:]))
