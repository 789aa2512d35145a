"""`python -m initcontainer` and the `package-init` console script.

Configured by PACKAGE_* environment variables only. Arguments are for people at a terminal: `--help` and
`--version` answer and exit 0 without reading the environment or touching the termination-message file;
anything else is refused with exit 2.
"""

from __future__ import annotations

import sys

from initcontainer import contract

USAGE = "usage: package-init   (configured by PACKAGE_* environment variables; package-init --help)"


def help_text() -> str:
    """What `package-init --help` prints: the variables and the exit codes, from the contract."""
    width = max(map(len, contract.ENV_SUMMARY))
    lines = [
        "package-init: download a package, verify it and unpack it into a directory, as the init container",
        "that package-injector adds to Pods. Configured by environment variables only:",
        "",
        *(f"  {name:<{width}}  {text}" for name, text in contract.ENV_SUMMARY.items()),
        "",
        "Exit codes:",
        *(f"  {code}  {text}" for code, text in contract.EXIT_SUMMARY.items()),
        "",
        "Example: PACKAGE_URL=https://example.com/app.tar.gz PACKAGE_DEST=/tmp/app package-init",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help", "help"):
        print(help_text())
        return contract.EXIT_OK
    if args and args[0] == "--version":
        from initcontainer import __version__

        print(f"package-init {__version__}")
        return contract.EXIT_OK
    if args:
        print(f"package-init: unexpected argument {args[0]!r}\n{USAGE}", file=sys.stderr)
        return contract.EXIT_CONFIG
    from initcontainer.main import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
