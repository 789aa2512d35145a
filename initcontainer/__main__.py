"""`python -m initcontainer` and the `package-init` console script."""

from __future__ import annotations

import sys

from initcontainer.main import main as _run


def main() -> int:
    """Console-script entry point: configured by the environment only, no arguments."""
    return _run()


if __name__ == "__main__":
    sys.exit(main())
