"""One error line per job: local rank 0 says it, the other ranks wait for it to be said."""

from __future__ import annotations

import argparse
import os
import sys

#: seconds the other local ranks wait before exiting on an error, so that torchrun, which stops
#: every worker at the first exit, does not stop local rank 0 before it has said why
QUIET_RANK_EXIT_DELAY_S = 3.0


def say_once(line: str) -> None:
    """Print one error line from local rank 0 only (every rank fails the same way); the other
    ranks wait a moment instead, so that rank 0 gets to print it under torchrun."""
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print(line, file=sys.stderr, flush=True)
    else:
        import time

        time.sleep(QUIET_RANK_EXIT_DELAY_S)


class OneLineParser(argparse.ArgumentParser):
    """An unknown flag or bad choice is one line (no usage block) from local rank 0, exit 2."""

    def error(self, message: str):
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            flags = [a for a in message[len(prefix):].split() if a.startswith("-")]
            if flags:
                message = (f"{flags[0]} is not supported yet (not a flag of this project; "
                           "docs/flags.md lists the Megatron flags it reads)")
        say_once(f"{self.prog}: error: {message}")
        sys.exit(2)
