"""The `railsight` command. Each subcommand lives in its own module under ``service.commands`` with
``register(subparsers)``; errors a user can cause become one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from models.spec import WeightsError
from service.errors import RailsightError
from service.settings import bad_setting_line

# Subcommand modules, in the order `railsight --help` lists them.
COMMANDS = ("detect", "batch", "synth", "train", "eval", "floors", "serve", "worker")

USER_ERRORS = (RailsightError, WeightsError)
EXIT_USER_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes print one line and exit 2, like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="railsight", description="Find, count and map railcars, tarped cargo and tracks in scenes."
    )
    parser.add_argument("--version", action="version", version=f"railsight {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f"service.commands.{name}").register(sub)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("railsight")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # no command at all: what the commands are
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"railsight: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ValidationError as exc:  # settings come from RAILSIGHT_* variables: one of them did not parse
        print(f"railsight: error: {bad_setting_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("railsight: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
