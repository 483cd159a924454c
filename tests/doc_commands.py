"""The commands and snippets the documentation shows: README.md and every page of the docs site.

One reader for the tests that run them (test_readme, test_own_data, test_results), so a command
moved from the README into a docs page keeps being run, and one shown on two pages runs once.
"""

import re
from pathlib import Path

from tests.helpers import ROOT

#: the prefixes of the lines that are run: the entry points and `python -m src.<tool>`
RUN_PREFIXES = ("python src/", "python -m src.", "python -m expkit")


def doc_pages() -> list[Path]:
    """README.md first, then the docs site's pages in name order (docs/*.md)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def block_lines(block: str) -> list[str]:
    """A code block's lines, each without its `  # comment` and surrounding blanks."""
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def shown_commands(pages: list[Path] | None = None) -> list[str]:
    """Every `python src/...` / `python -m src....` line of a `bash` block, once, in page order."""
    commands: dict[str, None] = {}  # ordered and deduplicated
    for page in doc_pages() if pages is None else pages:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block_lines(block):
                if line.startswith(RUN_PREFIXES):
                    commands.setdefault(line)
    return list(commands)


def section_commands(title: str, lang: str = "sh") -> list[str]:
    """The commands of the one `lang` block of the section `## title`, on whichever page has it."""
    found = []
    for page in doc_pages():
        text = page.read_text()
        if f"\n## {title}\n" in text:
            section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
            found += re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)
    assert len(found) == 1, f"section '## {title}' with one {lang} block: found {len(found)}"
    return block_lines(found[0])


def python_snippet(containing: str) -> str:
    """The one `python` block, on any page, that contains `containing`."""
    blocks = [
        block
        for page in doc_pages()
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
        if containing in block
    ]
    assert len(blocks) == 1, f"one python block containing {containing!r}: found {len(blocks)}"
    return blocks[0]
