"""Command line: ``python -m qnjax bench ...`` (console script ``qnjax``)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="qnjax", description="qnjax command line")
    from qnjax import __version__

    parser.add_argument("--version", action="version", version=f"qnjax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from qnjax import bench  # light: the heavy imports happen inside the command

    bench.add_arguments(sub.add_parser("bench", help="benchmark qnjax against other L-BFGS solvers"))
    ns = parser.parse_args(args)
    if ns.command == "bench":
        return bench.cli(ns, ["qnjax", *args])
    parser.error(f"unknown command {ns.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":
    sys.exit(main())
