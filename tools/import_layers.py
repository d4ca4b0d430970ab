"""Upward imports in src/lambdalet: every import that runs up the layer order below.

The order is ../shared/DESIGN.md's page read as code ("imports point down the page"): a package may
import the packages of its own tier and of any tier below, never above. Packages of one tier may
import each other (the tier says where they sit, not that they are independent). Lazy imports
inside functions count: they couple the modules all the same.

    python tools/import_layers.py            # the upward imports, one a line, and their count
    python tools/import_layers.py --check    # the same, exit 1 if there is any (make lint)

The graph is grimp's (import-linter's own); the "never" rules are import-linter contracts in
pyproject.toml, this tool measures the whole order.
"""
from __future__ import annotations

import argparse
import sys

import grimp

ROOT = "lambdalet"

# Top of the page first.
TIERS: list[tuple[str, ...]] = [
    ("__main__", "cli"),                      # entry points
    ("server",),                              # wiring, sockets, TLS
    ("api",),                                 # wire protocols, SigV4, routing
    ("schedules",),                           # EventBridge Scheduler (invokes through events/)
    ("events", "invoke"),                     # async invocations, event sources; the data plane
    ("services",),                            # the Lambda control plane
    ("kms", "signing", "queues", "audit"),
    ("iam",),                                 # identities, policies, authorization
    ("codepkg", "blobs", "crypto"),
    ("sandbox",),                             # isolation backends
    ("config",),                              # Settings (probes the host's runtimes: runtime/hostruntimes.py)
    ("logs", "observe"),                      # observability: function logs; the server's own log and metrics
    ("store",),                               # the database
    ("runtime",),                             # in-environment code (and host runtime discovery)
    ("models",),                              # plain data and AWS errors: imports nothing internal
]


def tier_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None                           # the root package itself (version string only)
    for i, tier in enumerate(TIERS):
        if parts[1] in tier:
            return i
    raise SystemExit(f"{module}: package {parts[1]!r} has no tier in tools/import_layers.py; add it")


def upward_imports(graph: grimp.ImportGraph) -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import into a higher tier."""
    found = []
    for importer in sorted(graph.modules):
        low = tier_of(importer)
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            high = tier_of(imported)
            if low is None or high is None or high >= low:
                continue
            for d in graph.get_import_details(importer=importer, imported=imported):
                found.append((importer, imported, d["line_number"]))
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if any import runs up the layers")
    args = ap.parse_args(argv)
    found = upward_imports(grimp.build_graph(ROOT))
    for importer, imported, line in found:
        print(f"{importer}:{line} -> {imported}")
    print(f"{len(found)} upward import(s)")
    return 1 if (args.check and found) else 0


if __name__ == "__main__":
    sys.exit(main())
