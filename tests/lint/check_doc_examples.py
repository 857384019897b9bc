#!/usr/bin/env python3
"""Each docs page that includes an example file (a line `<!-- example: docs/examples/X -->` followed by a
fenced code block) must show exactly the file's contents, so the compiled example and the page agree."""
import pathlib
import re
import sys

MARK = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", re.S)


def main(root):
    root = pathlib.Path(root)
    found, bad = 0, 0
    for page in sorted((root / "docs").rglob("*.md")):
        for rel, block in MARK.findall(page.read_text()):
            found += 1
            if (root / rel).read_text() != block:
                bad += 1
                print(f"{page.relative_to(root)}: code block differs from {rel}")
    print(f"{found} example blocks checked, {bad} differ")
    return 1 if bad or not found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
