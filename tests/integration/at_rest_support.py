"""Secrets at rest: a marker in every encoding it could leak in, and a data dir searched for them byte by byte."""
from __future__ import annotations

import base64
from pathlib import Path


def needles_for(markers: dict[str, bytes]) -> dict[str, bytes]:
    out = {}
    for label, m in markers.items():
        out[label] = m
        out[label + " (hex)"] = m.hex().encode()
        out[label + " (utf-16-le)"] = m.decode().encode("utf-16-le")
        for shift in range(3):  # base64 at every alignment, minus the edge characters
            enc = base64.b64encode(b"\0" * shift + m)[4:-4]
            out[f"{label} (base64/{shift})"] = enc
    return out


def scan(data_dir: Path, needles: dict[str, bytes]) -> list[str]:
    hits = []
    files = [p for p in Path(data_dir).rglob("*") if p.is_file()]
    assert files, f"nothing under {data_dir}"
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # e.g. a -shm/-journal file that went away meanwhile
            continue
        for label, needle in needles.items():
            if needle in data:
                hits.append(f"{label} found in {path.relative_to(data_dir)} at offset {data.find(needle)}")
    return hits
