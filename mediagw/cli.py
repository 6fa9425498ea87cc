"""The ``mediagw`` command: ``run`` the gateway, ``check`` a profile, manage ``recordings``."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from mediagw.config import load_profile, parse_listen_address, with_overrides
from mediagw.errors import ConfigError
from mediagw.recording import cli as recordings_cli

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _listen_arg(text: str) -> str:
    try:
        parse_listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _api_arg(text: str) -> str:
    from mediagw.api.auth import parse_api_address

    try:
        parse_api_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="mediagw", description="Contact-center SIP media gateway.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the gateway (the embedded default profile without --profile)")
    run.add_argument("--profile", help="TOML profile (default: the embedded loopback demo profile)")
    run.add_argument(
        "--sip",
        action="append",
        type=_listen_arg,
        metavar="TRANSPORT:HOST:PORT",
        help="listen address, udp:HOST:PORT or tcp:HOST:PORT; repeatable; replaces the profile's list",
    )
    run.add_argument("--data-dir", help="directory for the store, recordings and caches")
    run.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper)
    run.add_argument("--api", type=_api_arg, metavar="HOST:PORT",
                     help="HTTP control API address (default: the profile's api.listen, 127.0.0.1:8080)")

    check = commands.add_parser("check", help="validate a profile and report the first error")
    check.add_argument("profile", help="TOML profile to validate")
    recordings_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mediagw`` console script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return _check(args.profile)
    if args.command == "recordings":
        return recordings_cli.run(args)
    return _run(args)


def _check(path: str) -> int:
    try:
        profile = load_profile(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    listen = ", ".join(str(a) for a in profile.sip.listen_addresses)
    print(
        f"{path}: ok: profile {profile.name!r}, listens on {listen}, "
        f"{len(profile.trunks)} trunk(s), {len(profile.agents)} agent(s), {len(profile.numbers)} number(s)"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        profile = with_overrides(
            load_profile(args.profile), listen=args.sip, data_dir=args.data_dir, log_level=args.log_level,
            api_listen=args.api,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, profile.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aiosqlite", "sqlalchemy", "botocore", "boto3", "urllib3"):  # they log every query/request
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from mediagw.gateway import run_gateway

    return run_gateway(profile)


if __name__ == "__main__":
    sys.exit(main())
