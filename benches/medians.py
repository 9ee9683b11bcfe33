#!/usr/bin/env python3
"""Print the median of every criterion benchmark from the last `cargo bench` run."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
for estimates in sorted(root.glob("**/new/estimates.json")):
    name = estimates.parent.parent.relative_to(root)
    median_ns = json.loads(estimates.read_text())["median"]["point_estimate"]
    if median_ns >= 1_000_000:
        shown = f"{median_ns / 1_000_000:.2f} ms"
    elif median_ns >= 1000:
        shown = f"{median_ns / 1000:.2f} µs"
    else:
        shown = f"{median_ns:.0f} ns"
    print(f"{str(name):55} {shown:>10}")
