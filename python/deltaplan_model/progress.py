"""Progress bars on a terminal only: never when stderr is not a TTY or when CI is set."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def enabled() -> bool:
    return sys.stderr.isatty() and "CI" not in os.environ


def progress(iterable, total: int | None = None, desc: str | None = None):
    return tqdm(iterable, total=total, desc=desc, disable=not enabled(), file=sys.stderr, leave=False)
