"""Mark the lock's optional packages with the copier conditions of the requirements that pull them in.

requirements.txt wraps optional requirements in copier line statements (`# % if optuna` ...
`# % endif`); `uv pip compile` (`make lock`) resolves them all into requirements.lock and records,
under each pin, which packages require it (`# via ...`). This script follows those records from
each requirement to everything it pulls in, and wraps every pin that only optional requirements
need in the same statements, so a generated project's lock holds exactly what its
requirements.txt asks for (the statements are comments to uv and pip). Written by hand: uv
writes no conditions, and copier renders files, it does not re-resolve them.

    python scripts/lock_markers.py            # rewrite requirements.lock (make lock runs it)
    python scripts/lock_markers.py --check    # exit 1 if the lock's statements are not up to date
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATEMENT = re.compile(r"^# % (if .+|endif)\s*$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_conditions(text: str) -> dict[str, str | None]:
    """Each requirement of requirements.txt -> the condition it sits under (None: always)."""
    conditions: dict[str, str | None] = {}
    condition = None
    for line in text.splitlines():
        statement = STATEMENT.match(line)
        if statement:
            word = statement.group(1)
            condition = None if word == "endif" else word.removeprefix("if ").strip()
            continue
        line = line.split("#", 1)[0].strip()
        match = NAME.match(line)
        if match and not line.startswith("-"):
            conditions[normalized(match.group(1))] = condition
    return conditions


def lock_entries(text: str) -> list[tuple[str, list[str]]]:
    """The lock as `(name, lines)` blocks; the header and old statements under the name ''."""
    entries: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        if STATEMENT.match(line):
            continue  # made again below
        pin = PIN.match(line)
        if pin:
            entries.append((normalized(pin.group(1)), [line]))
        else:
            entries[-1][1].append(line)
    return entries


def required_by(lines: list[str]) -> list[str]:
    """The `# via` names of one pin (`-r requirements.txt` is left out)."""
    names, inside = [], False
    for line in lines:
        comment = line.strip().removeprefix("#").strip()
        if comment.startswith("via"):
            inside = True
            comment = comment.removeprefix("via").strip()
        if inside and comment and not comment.startswith("-r"):
            names.append(normalized(comment.split()[0]))
    return names


def pin_conditions(entries: list[tuple[str, list[str]]], roots: dict[str, str | None]) -> dict:
    """Each pin -> None (some always-kept requirement needs it) or the set of conditions of the
    optional requirements that need it."""
    parents = {name: required_by(lines) for name, lines in entries if name}
    memo: dict[str, frozenset[str] | None] = {}

    def conditions(name: str, path: frozenset[str]) -> frozenset[str] | None:
        if name in memo:
            return memo[name]
        found: set[str] = set()
        if name in roots:
            if roots[name] is None:
                memo[name] = None
                return None
            found.add(str(roots[name]))
        for parent in parents.get(name, []):
            if parent in path or parent not in parents:
                continue
            above = conditions(parent, path | {name})
            if above is None:
                memo[name] = None
                return None
            found |= above
        memo[name] = frozenset(found)
        return memo[name]

    return {name: conditions(name, frozenset()) for name in parents}


def atoms(condition: str) -> list[str]:
    """`optuna or loggers` -> its names; any other expression stays whole, in parentheses."""
    if re.fullmatch(r"\w+( or \w+)*", condition):
        return condition.split(" or ")
    return [f"({condition})"]


def marked(lock: str, requirements: str) -> str:
    entries = lock_entries(lock)
    kept = pin_conditions(entries, requirement_conditions(requirements))
    out: list[str] = []
    for name, lines in entries:
        condition = kept.get(name)
        if not name or condition is None or not condition:
            out += lines
            continue
        joined = " or ".join(sorted({a for c in condition for a in atoms(c)}))
        out += [f"# % if {joined}", *lines, "# % endif"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    lock_path = ROOT / "requirements.lock"
    lock = lock_path.read_text()
    new = marked(lock, (ROOT / "requirements.txt").read_text())
    if "--check" in argv:
        if new != lock:
            print(
                "requirements.lock: copier statements out of date: python scripts/lock_markers.py"
            )
            return 1
        return 0
    lock_path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
