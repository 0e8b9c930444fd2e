"""Command groups that several modules add to: `lessonbot bench …`, `lessonbot eval …`."""

from __future__ import annotations

import argparse


def subcommands(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """The sub-commands of `lessonbot NAME`, made by whichever module registers one first."""
    parser = subparsers.choices.get(name) or subparsers.add_parser(name, help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=name, required=True, metavar="KIND")
