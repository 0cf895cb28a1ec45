"""Print the requirements of one image role, read from pyproject.toml alone (no project source needed).

    python docker/dependencies.py pyproject.toml bot     the project's dependencies
    python docker/dependencies.py pyproject.toml agent   those plus the [agent] extra

The images install these before they copy the source, so a code change reuses that layer (torch stays).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

EXTRAS = {"bot": (), "agent": ("agent",)}


def requirements(pyproject: Path, role: str) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    self_reference = re.compile(rf"^{re.escape(project['name'])}\s*\[(?P<extras>[^\]]+)\]")
    wanted, seen, out = list(EXTRAS[role]), set(), list(project.get("dependencies", []))
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in optional[extra]:
            if match := self_reference.match(requirement):  # photogen[other] inside an extra
                wanted += [name.strip() for name in match["extras"].split(",")]
            else:
                out.append(requirement)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in EXTRAS:
        print("usage: dependencies.py PYPROJECT bot|agent", file=sys.stderr)
        return 2
    print("\n".join(requirements(Path(argv[0]), argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
