"""The conversations. Adding one is a new module here and a line in the lists below."""

from __future__ import annotations

from dialogs import admin, basics
from dialogs.base import Command, Turn

COMMANDS: tuple[Command, ...] = basics.COMMANDS + admin.COMMANDS

fallback = basics.fallback

__all__ = ["COMMANDS", "Command", "Turn", "fallback"]
