"""`python -m expkit --version`: the installed library's version (also in every results.json)."""

import argparse

from expkit import __version__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m expkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"expkit {__version__}")
    parser.parse_args(argv)
    parser.print_help()


if __name__ == "__main__":
    main()
