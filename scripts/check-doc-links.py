#!/usr/bin/env python3
"""Checks that every relative link in README.md and docs/*.md resolves: the file exists and,
for a `#fragment`, the target Markdown file has a heading with that GitHub-style anchor."""
import pathlib
import re
import sys
import unicodedata

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text):
    """The lines outside fenced code blocks."""
    inside = False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            inside = not inside
        elif not inside:
            yield line


def anchors(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    seen, out = {}, set()
    for line in prose(path.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = "".join(
            c for c in m.group(1).lower()
            if c in " -_" or unicodedata.category(c)[0] in "LN"
        ).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def main():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    bad = 0
    for md in files:
        for line in prose(md.read_text(encoding="utf-8")):
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue
                name, _, frag = target.partition("#")
                dest = (md.parent / name).resolve() if name else md
                if not dest.exists():
                    print(f"{md.relative_to(ROOT)}: missing {target}")
                    bad += 1
                elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                    print(f"{md.relative_to(ROOT)}: no heading #{frag} in {name or md.name}")
                    bad += 1
    print(f"{len(files)} files checked, {bad} broken links")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
