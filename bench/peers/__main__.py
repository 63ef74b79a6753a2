"""Run the peer suite: `.venv/bin/python -m bench.peers [--quick] [--rounds N] ...`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from bench.peers.runner import Options, render, run
from bench.peers.servers import Peer
from bench.peers.sizes import FULL, QUICK, FloodRenderer
from bench.peers.workloads import Workload

RESULTS = Path(__file__).resolve().parents[1] / "results"


def parse(argv: list[str]) -> Options:
    """Options from the command line; sizes default to the full run, or the quick one."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description="ec2-terminal against ssh -tt, ttyd, gotty, webssh and wetty, side by side.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (a smoke run)")
    parser.add_argument("--rounds", type=int, help="rounds of throughput, echo, connect, flood")
    parser.add_argument("--slow-rounds", type=int, help="rounds of the stall and idle workloads")
    parser.add_argument("--payload-mib", type=int, help="size of the throughput `cat`")
    parser.add_argument("--keys", type=int, help="keystrokes timed per echo trial")
    parser.add_argument("--connects", type=int, help="sessions opened per connect trial")
    parser.add_argument(
        "--stall-seconds", type=float, dest="stall_s", help="how long the client stalls"
    )
    parser.add_argument("--stall-mib", type=int, help="output printed while the client stalls")
    parser.add_argument(
        "--idle-sessions", type=int, nargs="+", dest="idle_counts", help="idle session counts"
    )
    parser.add_argument("--flood-mib", type=int, help="output flooded into Chromium")
    parser.add_argument(
        "--flood-renderer",
        type=FloodRenderer,
        choices=list(FloodRenderer),
        help="the page's renderer in the flood (default: auto, the page's own choice)",
    )
    parser.add_argument(
        "--peers",
        nargs="+",
        choices=[p.name.lower() for p in Peer],
        help="peers to run (default: all)",
    )
    parser.add_argument(
        "--workloads", nargs="+", choices=[w.value for w in Workload], help="default: all"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="run nothing: summarize a saved peers.json again and rewrite the files in --out",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(sizes)
        if getattr(args, f.name, None) is not None
    }
    if "idle_counts" in overrides:
        overrides["idle_counts"] = tuple(overrides["idle_counts"])
    peers = [Peer[name.upper()] for name in args.peers] if args.peers else list(Peer)
    workloads = [Workload(w) for w in args.workloads] if args.workloads else list(Workload)
    return Options(
        dataclasses.replace(sizes, **overrides), peers, workloads, args.out, saved=args.render
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    result = render(options.saved, options.out) if options.saved else asyncio.run(run(options))
    print(f"results: {options.out / 'peers.md'} (and peers.json, peers-echo.png)")
    failed = [t for t in result["trials"] if t["error"]]
    return 1 if failed or not result["trials"] else 0


if __name__ == "__main__":
    sys.exit(main())
