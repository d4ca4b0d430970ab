"""`lambdalet status`: is a server running on this data dir, what it holds and runs, and how is its
data disk.

A thin reader: endpoint.json (the running server's URL, pid and metrics URL), the activity snapshot
the server rewrites every 2 s (observe/activity.py: functions, queues, environments, concurrency in
use) and the status file the server's disk monitor keeps on tmpfs (store/headroom.py), plus a fresh
statvfs of the data dir. Exit status
0: running and the disk is fine; 1: no server running; 2: running, but the disk is low or critical.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from lambdalet.config import Settings, default_data_dir
from lambdalet.server.startup import read_isolation
from lambdalet.observe.activity import read_activity
from lambdalet.store.headroom import CRITICAL, LOW, MiB, Marks, free_space, read_status

_MEANING = {
    "ok": "ok",
    LOW: "LOW: function log output is being dropped",
    CRITICAL: "CRITICAL: state-changing API calls are refused (retryable throttling errors); logs dropped",
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _echo_activity(activity: dict | None, metrics_url: str | None) -> None:
    if activity:
        envs = activity.get("environments") or {}
        conc = activity.get("concurrency") or {}
        click.echo(f"functions: {activity.get('functions', '?')}   queues: {activity.get('queues', '?')}")
        click.echo(f"environments: {envs.get('busy', 0)} busy, {envs.get('idle', 0)} idle "
                   f"({activity.get('environment_memory_mb', 0):,} MiB of MemorySize)")
        accounts = ", ".join(f"{a}: {n}" for a, n in sorted((conc.get("by_account") or {}).items()))
        click.echo(f"concurrency in use: {conc.get('in_use', 0)} (limit {conc.get('account_limit', '?')} per account)"
                   + (f"; {accounts}" if accounts else "") + f", as of {time.time() - activity.get('updated', time.time()):.0f}s ago")
    if metrics_url:
        click.echo(f"metrics: {metrics_url}")


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State directory (default: $LAMBDALET_DATA_DIR or ~/.lambdalet).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of lines.")
def status(data_dir: Path | None, as_json: bool) -> None:
    """Say whether a server runs on the data dir and whether its data disk has room."""
    settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve())
    endpoint = None
    try:
        endpoint = json.loads(settings.endpoint_file.read_text())
    except (OSError, ValueError):
        pass
    running = bool(endpoint) and _alive(int(endpoint.get("pid", 0)))
    isolation = read_isolation(settings) if running else None     # the sandbox in force (server/startup.py)
    disk = read_status(settings.status_file) if running else None
    if disk is None and settings.data_dir.is_dir():    # no server: judge with the default marks
        free, total = free_space(settings.data_dir)
        marks = Marks.for_filesystem(total)
        disk = {"path": str(settings.data_dir), "level": marks.level(free), "free_bytes": free, "total_bytes": total,
                "low_bytes": marks.low_bytes, "critical_bytes": marks.critical_bytes}
    doc = {"running": running, "url": endpoint.get("url") if running else None,
           "pid": endpoint.get("pid") if running else None, "disk": disk,
           "metrics_url": endpoint.get("metrics_url") if running else None,
           "activity": read_activity(settings.activity_file) if running else None}
    if isolation is not None:
        doc["isolation"] = isolation
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"server: running (pid {doc['pid']}) at {doc['url']}" if running
                   else f"server: not running on {settings.data_dir}")
        _echo_activity(doc["activity"], doc["metrics_url"])
        if disk:
            age = f", as of {time.time() - disk['updated']:.0f}s ago" if "updated" in disk else ""
            click.echo(f"data disk: {disk['free_bytes'] / MiB:,.0f} MiB free of {disk['total_bytes'] / MiB:,.0f} MiB "
                       f"(low-water {disk['low_bytes'] / MiB:,.0f} MiB, critical {disk['critical_bytes'] / MiB:,.0f} MiB)"
                       f"{age}: {_MEANING.get(disk['level'], disk['level'])}")
            if disk.get("log_bytes_dropped") or disk.get("calls_refused"):
                click.echo(f"since start: {disk.get('log_bytes_dropped', 0):,} log bytes dropped, "
                           f"{disk.get('calls_refused', 0):,} calls refused for lack of space")
    if isolation and not as_json:
        click.echo(f"isolation: {isolation.get('summary', isolation.get('mode'))}")
        for missing in isolation.get("missing", []):
            click.echo(f"isolation MISSING: {missing}")
    if not running:
        sys.exit(1)
    if disk and disk["level"] != "ok":
        sys.exit(2)
