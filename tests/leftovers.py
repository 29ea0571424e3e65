"""Temporary files that saves of a file create beside it (left behind only by a kill)."""

from __future__ import annotations

import os
import re

from charlm.io.tensorfile import TEMP_SUFFIX


def temp_files(path: str) -> list[str]:
    """Sorted paths of `path`'s temporary files: "." + its name + "." + 8 characters of
    [a-z0-9_] (tempfile's) + TEMP_SUFFIX, in its directory."""
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.escape("." + os.path.basename(path) + ".") + r"[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(os.path.join(directory, n) for n in names if re.fullmatch(pattern, n))
