"""`make install`'s step for the AWS SDK for Python: `python -m lambdalet.runtime.pysdk_provision DIR REQ`
installs REQ (e.g. boto3==1.44.18, with its dependencies) from the package index into DIR/python-sdk/X.Y
for every pythonX.Y this host runs (hostruntimes.discover_managed), byte-compiled by that interpreter
(the SDK is read-only inside an environment: without .pyc files every cold import would compile).

pip runs once per version with --python-version and --only-binary (boto3 and its dependencies are pure
Python wheels), so an interpreter without pip of its own is served too. A version already provisioned
with REQ is left alone; a failure prints a note and leaves that runtime without an SDK.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from lambdalet.runtime.hostruntimes import discover_managed


def provision(runtimes_dir: Path, requirement: str) -> int:
    pin = requirement.replace("==", "-")
    failures = 0
    for rid in discover_managed(runtimes_dir=runtimes_dir).identifiers():
        if not rid.startswith("python"):
            continue
        ex = discover_managed(runtimes_dir=runtimes_dir).get(rid)
        ver = rid[len("python"):]
        target = runtimes_dir / "python-sdk" / ver
        if (target / f"{pin}.dist-info").is_dir():
            print(f"{rid}: {requirement} already in {target}")
            continue
        tmp = target.with_name(ver + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(tmp),
               "--python-version", ver, "--only-binary=:all:", requirement]
        compile_ = [ex.exe, "-m", "compileall", "-q", "-j0", str(tmp)]
        got = subprocess.run(pip, stderr=subprocess.PIPE, text=True)
        if got.returncode or subprocess.run(compile_, stdout=subprocess.DEVNULL).returncode:
            why = (got.stderr.strip().splitlines() or ["byte-compiling failed"])[-1][:200]
            print(f"note: could not provision {requirement} for {rid} ({why}): its functions must bring their own SDK")
            shutil.rmtree(tmp, ignore_errors=True)
            failures += 1
            continue
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        print(f"{rid}: {requirement} in {target}")
    return failures


if __name__ == "__main__":
    provision(Path(sys.argv[1]), sys.argv[2])
