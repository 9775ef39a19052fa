"""Command line for textstats: summarise files or standard input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from textstats import Summary, summarize


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Count lines, words and characters, and list the most common words.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="text files to read; none or '-' reads standard input",
    )
    parser.add_argument(
        "--top", type=int, default=5, metavar="N", help="how many top words to list (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a report")
    return parser


def format_report(name: str, summary: Summary) -> str:
    lines = [
        f"{name}",
        f"  lines:        {summary.lines}",
        f"  words:        {summary.words}",
        f"  unique words: {summary.unique_words}",
        f"  characters:   {summary.characters}",
        f"  reading time: {summary.reading_minutes} min",
    ]
    if summary.top_words:
        lines.append("  top words:    " + ", ".join(f"{w} ({c})" for w, c in summary.top_words))
    return "\n".join(lines)


def read_source(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    with open(name, encoding="utf-8") as handle:
        return handle.read()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top < 0:
        parser.error("--top must be zero or more")

    results: dict[str, Summary] = {}
    for name in args.files or ["-"]:
        try:
            text = read_source(name)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"main.py: cannot read {name}: {exc}", file=sys.stderr)
            return 1
        results["<stdin>" if name == "-" else name] = summarize(text, top=args.top)

    if args.json:
        print(json.dumps({name: s.to_dict() for name, s in results.items()}, indent=2))
    else:
        print("\n\n".join(format_report(name, s) for name, s in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
