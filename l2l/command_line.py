"""The command-line parser of every l2l command: a usage error is one line, ``prog: error: message`` (exit 2)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from l2l.validation import InvalidValueError, require_seed


class CommandParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors are one line naming the flag, the value and what is allowed
    (argparse prints the usage block first); ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")

    def require_at_least(self, flag: str, value: int | None, least: int) -> None:
        """Stop when the integer option ``flag`` is below ``least`` (None: not given)."""
        if value is not None and value < least:
            self.error(f"{flag}={value} is not allowed: it must be an integer >= {least}")

    def require_seed(self, flag: str, value: int | None) -> None:
        """Stop when the seed option ``flag`` is outside [0, 2**63) (None: not given)."""
        if value is not None:
            try:
                require_seed(flag, value)
            except InvalidValueError as error:
                self.error(str(error))
