"""python -m addray.evidence [FOLDER]: the index of an evidence folder (by default
results/reference), made from the one-line README of every folder in it that holds
files; a folder without one is an error (exit 2), named.

    python -m addray.evidence                 # rewrites results/reference/INDEX.md
    python -m addray.evidence --check         # exit 1 if INDEX.md is not up to date
"""

from __future__ import annotations

from pathlib import Path

from addray import cli, files
from addray.errors import StudyError

INDEX = "INDEX.md"
HEADER = ("# Evidence index\n\nMade by `python -m addray.evidence` from each folder's "
          "README.md (its first line); do not edit by hand.\n\n| folder | what |\n|---|---|\n")


def folders(root: Path) -> list[Path]:
    """Every folder under ``root`` that holds a file other than its README and the index."""
    held = {p.parent for p in root.rglob("*") if p.is_file()
            and p.name not in ("README.md", INDEX)}
    return sorted(d for d in held if d != root)


def index_text(root: Path) -> str:
    """The index; raises StudyError naming the first folder without a README."""
    lines = []
    for folder in folders(root):
        readme = folder / "README.md"
        if not readme.is_file():
            raise StudyError(f"{folder}: no README.md (one line: config, commit, machine, "
                             f"verdict)")
        try:
            text = readme.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise StudyError(f"{readme}: cannot read ({exc})") from None
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        rel = folder.relative_to(root).as_posix()
        lines.append(f"| [{rel}]({rel}/) | {first.replace('|', '/')} |")
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", default="results/reference")
    p.add_argument("--check", action="store_true", help="only check that the index is current")
    args = p.parse_args(argv)
    root = Path(args.folder)
    if not root.is_dir():
        raise StudyError(f"{root}: not a folder")
    text = index_text(root)
    target = root / INDEX
    if args.check:
        current = target.read_text() if target.is_file() else ""
        if current != text:
            print(f"{target}: out of date; run python -m addray.evidence {root}")
            return 1
        return 0
    files.write_text(target, text)
    print(f"wrote {target} ({text.count(chr(10)) - 5} folders)")
    return 0


if __name__ == "__main__":
    cli.run(main)
