#!/usr/bin/env python3
"""The declared minimum Rust version must be true: no locked dependency may need a newer one.
Reads `cargo metadata` (the resolved, locked graph) and compares every package's `rust-version`
with the workspace's; our crates must inherit it. Exits 1 naming the offenders."""
import json
import subprocess
import sys

meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True, capture_output=True, text=True,
    ).stdout
)
resolved = {n["id"] for n in meta["resolve"]["nodes"]}
members = set(meta["workspace_members"])


def version(v):
    parts = [int(x) for x in (v or "0").split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


declared = {p["name"]: p.get("rust_version") for p in meta["packages"] if p["id"] in members}
if len(set(declared.values())) != 1 or None in declared.values():
    sys.exit(f"every workspace crate must inherit one rust-version: {declared}")
msrv = next(iter(declared.values()))
newer = sorted(
    (version(p.get("rust_version")), p["name"], p["version"], p.get("rust_version"))
    for p in meta["packages"]
    if p["id"] in resolved and version(p.get("rust_version")) > version(msrv)
)
if newer:
    sys.exit(
        f"rust-version {msrv} is not true: "
        + ", ".join(f"{n} {v} needs {rv}" for _, n, v, rv in newer)
    )
print(f"msrv: rust-version {msrv} covers all {len(resolved)} locked packages")
