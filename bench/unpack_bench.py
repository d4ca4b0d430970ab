"""What unpacking a code package costs since it moved into an unprivileged child (codepkg/unpack.py),
on the first environment of a new CodeSha256 (later environments reuse the unpacked tree).

    sudo .venv/bin/python bench/unpack_bench.py [--rounds 30]

Prints, for a small package (one handler) and a larger one (2,000 files, ~8 MB), the median of:
  in-process   write_archive() in this process (what the old extractor did, minus its link-following)
  child        unpack(): spawn, import, drop to the unpack uid, write, chown back (what Invoke pays)
  floor        spawning `python3 -S -c pass` from this process: the process-start floor
and child / floor. Bounded: a few seconds.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from lambdalet.codepkg import archive  # noqa: E402
from lambdalet.codepkg.unpack import unpack, write_archive  # noqa: E402


def package(files: int, size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app.py", "def handler(e, c):\n    return e\n")
        for i in range(files):
            zf.writestr(f"lib/pkg{i % 50}/mod{i}.py", (f"X{i} = {i}\n" * (size // 10))[:size])
    return buf.getvalue()


def timed(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="unpack-bench-"))
    try:
        floor = timed(lambda: subprocess.run([sys.executable, "-S", "-c", "pass"], check=True), args.rounds)
        print(f"floor (python3 -S -c pass): {floor:.2f} ms   uid drop: {'yes' if os.geteuid() == 0 else 'no (not root)'}")
        n = [0]
        for label, data in (("small (1 file)", package(0, 0)), ("large (2,000 files, ~8 MB)", package(2000, 4000))):
            def in_process():
                n[0] += 1
                dest = work / f"in{n[0]}"
                dest.mkdir()
                fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    with zipfile.ZipFile(io.BytesIO(data)) as zf:
                        write_archive(zf, archive.read_archive(zf), fd)
                finally:
                    os.close(fd)

            def child():
                n[0] += 1
                unpack([data], work / f"ch{n[0]}")

            rounds = args.rounds if len(data) < 1 << 20 else max(5, args.rounds // 5)
            a, b = timed(in_process, rounds), timed(child, rounds)
            print(f"{label:28s} zip {len(data) / 1e6:6.2f} MB  in-process {a:7.2f} ms  child {b:7.2f} ms  "
                  f"child/floor {b / floor:5.2f}x  child-in-process {b - a:6.2f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
