#!/usr/bin/env python3
"""The upgrade script's copies of functions equal their install-script sources.

An upgrade script must be self-contained, so sql/lms_etl--<from>--<to>.sql carries its own
copy of every function it creates or replaces. `make test-upgrade` catches a copy that
drifted from its source by comparing catalogs, after minutes of building; this check says
which function differs, in a second, as part of `make lint`.

For each function defined both in an install file (sql/*.sql) and in the newest upgrade
script, the upgrade script's last definition must equal the install one, statement for
statement (comments outside the body and whitespace aside; `OR REPLACE` allowed).
"""

import re
import sys
from pathlib import Path

SQL = Path(__file__).resolve().parent.parent / "sql"
FUNCTION = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([\w.]+)\s*\(", re.IGNORECASE
)


def statements(text):
    """Splits SQL into statements, dropping `--` and `/* */` comments outside quotes."""
    out, current, i, n = [], [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.find("*/", i) + 2
        elif c == "'":
            j = i + 1
            while True:
                j = text.index("'", j)
                if text.startswith("''", j):
                    j += 2
                else:
                    break
            current.append(text[i : j + 1])
            i = j + 1
        elif c == "$" and (m := re.match(r"\$\w*\$", text[i:])):
            tag = m.group(0)
            j = text.index(tag, i + len(tag)) + len(tag)
            current.append(text[i:j])
            i = j
        elif c == ";":
            out.append("".join(current))
            current, i = [], i + 1
        else:
            current.append(c)
            i += 1
    return out


def normalized(statement):
    """Whitespace outside quotes collapsed, `OR REPLACE` dropped: what the catalog sees."""
    parts = re.split(r"(\$\w*\$.*?\$\w*\$|'(?:[^']|'')*')", statement, flags=re.S)
    flat = "".join(
        p if p.startswith(("$", "'")) else re.sub(r"\s+", " ", p) for p in parts
    ).strip()
    return re.sub(r"^CREATE OR REPLACE FUNCTION", "CREATE FUNCTION", flat, flags=re.I)


def signature(statement):
    """`name(argument text up to the closing parenthesis)`, whitespace collapsed."""
    statement = statement.strip()
    m = FUNCTION.match(statement)
    if not m:
        return None
    depth, start = 1, m.end()
    for k in range(start, len(statement)):
        depth += {"(": 1, ")": -1}.get(statement[k], 0)
        if depth == 0:
            return m.group(1) + "(" + re.sub(r"\s+", " ", statement[start:k]).strip() + ")"
    return None


def functions(path):
    defined = {}
    for s in statements(path.read_text()):
        if (sig := signature(s)) is not None:
            defined[sig] = normalized(s)  # the last definition wins
    return defined


def version_key(path):
    to = path.name.split("--")[-1].removesuffix(".sql")
    return tuple(int(x) for x in to.split("."))


def main():
    upgrades = sorted(SQL.glob("lms_etl--*--*.sql"), key=version_key)
    if not upgrades:
        print("upgrade copies: no upgrade script")
        return 0
    newest = upgrades[-1]
    copies = functions(newest)
    sources = {}
    for path in sorted(SQL.glob("*.sql")):
        if not path.name.startswith("lms_etl--"):
            for sig, text in functions(path).items():
                sources[sig] = (path.name, text)
    compared, drifted = 0, []
    for sig, copy in copies.items():
        if sig in sources:
            compared += 1
            name, source = sources[sig]
            if source != copy:
                drifted.append(f"  {sig}: {newest.name} differs from {name}")
    if drifted:
        print(f"upgrade copies: {len(drifted)} of {compared} functions drifted:", file=sys.stderr)
        print("\n".join(drifted), file=sys.stderr)
        print("  copy the install file's definition into the upgrade script", file=sys.stderr)
        return 1
    print(f"upgrade copies: {compared} functions in {newest.name} equal their sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
