"""The command line: `python -m zengrad info | demo | bench [options]` (also installed as `zengrad`)."""
from __future__ import annotations

import argparse
import sys


def _info(args: argparse.Namespace) -> int:
    """Print zengrad.info(), one key per line, then the devices (GPUs, or why none is usable)."""
    import zengrad
    from zengrad import _device

    info = zengrad.info()
    devices = _device.describe()
    why = devices["cuda_unavailable"]
    info["devices"] = ["cpu"] + devices["cuda"] + ([f"(no GPU: {why.split(': ', 1)[-1]})"] if why else [])
    width = max(map(len, info))
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key:{width}}  {'-' if not value else ''}")
            for name, text in value.items():
                print(f"{'':{width}}    {name}: {text}")
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            print(f"{key:{width}}  {shown}")
    return 0


def _add_info(commands) -> None:
    parser = commands.add_parser("info", help="version, backends, SIMD level, threads, devices")
    parser.set_defaults(func=_info)


def _add_demo(commands) -> None:
    from zengrad import demo

    parser = commands.add_parser("demo", help="train and evaluate the seed CNN (embedded Fashion-MNIST subset)",
                                 description=demo.__doc__.splitlines()[0])
    demo.add_arguments(parser)
    parser.set_defaults(func=demo.run)


def _add_bench(commands) -> None:
    from zengrad import bench

    parser = commands.add_parser("bench", help="time the kernels on every backend beside the NumPy reference",
                                 description=bench.__doc__.splitlines()[0])
    bench.add_arguments(parser)
    parser.set_defaults(func=bench.run)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="zengrad", description="zengrad: a compiled-kernel neural-network engine")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_info(commands)
    _add_demo(commands)
    _add_bench(commands)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
