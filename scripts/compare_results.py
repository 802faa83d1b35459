"""Compare two results stores run by run: are reruns of the same configs identical?

    python scripts/compare_results.py results/laptop /tmp/rerun

For every run present in both stores (`runs/<id>.json`; the id is the hash of the full resolved
config), compares what the run measured: status, final loss, parameters, FLOPs, steps, and every
row of its ranks and probes. Wall times are printed side by side, never compared. Exits 1 if any
shared run differs, 2 if the stores share no run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MEASURED = ("status", "final_loss", "params", "flops_per_step", "steps_done", "ranks", "probes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", type=Path, help="a results store (e.g. results/laptop)")
    parser.add_argument("rerun", type=Path, help="a store whose runs are compared with the reference's")
    args = parser.parse_args(argv)
    ids = sorted({p.stem for p in (args.reference / "runs").glob("*.json")}
                 & {p.stem for p in (args.rerun / "runs").glob("*.json")})
    if not ids:
        print(f"no run is in both {args.reference} and {args.rerun}", file=sys.stderr)
        return 2
    differing = 0
    for run in ids:
        a, b = (json.loads((store / "runs" / f"{run}.json").read_text()) for store in (args.reference, args.rerun))
        diff = [key for key in MEASURED if a.get(key) != b.get(key)]
        differing += bool(diff)
        print(f"{run}  {b.get('axis', '?'):<13} {'identical' if not diff else 'DIFFERENT in ' + ', '.join(diff)}"
              f"  ({len(b['ranks'])} rank rows, {len(b['probes'])} probe rows; wall {a['wall_time_s']:.0f} s"
              f" -> {b['wall_time_s']:.0f} s)")
    print(f"{len(ids) - differing}/{len(ids)} shared runs identical")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
