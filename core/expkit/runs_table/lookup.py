"""Find one key's value in a YAML file that Hydra/OmegaConf wrote, without parsing the whole file.

A table over thousands of runs that filters on `optimizer.lr` would otherwise parse every run's
whole config (~1.5 ms each with libyaml, since PyYAML builds every node in Python): 3 s for
2,000 runs. The files Hydra and OmegaConf write are block-style YAML (`key: value`, nested maps
indented, lists as `- item`), so the line that holds a key can be found by its indentation and only
that value is parsed (~20 us). Anything this reader is not sure about (a flow mapping, a value
continued on the next line, odd indentation) raises `NotSimple`, and the caller parses the file
with PyYAML instead: the answer is the same, only slower.
"""

import re
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class NotSimple(Exception):
    """The file is not in the plain block style this reader handles: parse it fully instead."""


class Mapping:
    """Marker: the key holds a mapping (a config group's node), not a value to compare."""


MAPPING = Mapping()
ABSENT = object()


_KEY_LINE: dict[tuple[int, str], re.Pattern] = {}
_BLOCK_END: dict[int, re.Pattern] = {}
_LIST_END: dict[int, re.Pattern] = {}
_NEXT_CONTENT = re.compile(r"^( *)(\S.*)$", re.M)


def _key_line(indent: int, key: str) -> re.Pattern:
    """A line `key: rest` at exactly `indent` spaces (rest in group 1)."""
    pattern = _KEY_LINE.get((indent, key))
    if pattern is None:
        pattern = re.compile(rf"^ {{{indent}}}{re.escape(key)}:(?:[ ]+(.*))?$", re.M)
        _KEY_LINE[(indent, key)] = pattern
    return pattern


def _block_end(indent: int) -> re.Pattern:
    """The first line indented `indent` spaces or less: where a key's mapping block ends."""
    pattern = _BLOCK_END.get(indent)
    if pattern is None:
        pattern = re.compile(rf"^ {{0,{indent}}}\S", re.M)
        _BLOCK_END[indent] = pattern
    return pattern


def _list_end(indent: int) -> re.Pattern:
    """Where an unindented list under a key at `indent` ends: a line at `indent` or less that is
    not one of its `- ` items."""
    pattern = _LIST_END.get(indent)
    if pattern is None:
        pattern = re.compile(rf"^(?! {{{indent}}}-(?: |$)) {{0,{indent}}}\S", re.M)
        _LIST_END[indent] = pattern
    return pattern


def find_value(text: str, path: list[str]) -> Any:
    """The value at `path` (keys from the top), `MAPPING` if it is a mapping, `ABSENT` if the file
    has no such key; `NotSimple` if unsure."""
    if "\t" in text or text.lstrip().startswith(("%", "---", "{", "[", "&", "!")):
        raise NotSimple("tabs, a directive, or a flow/anchored document")
    start, end, indent = 0, len(text), 0
    for depth, key in enumerate(path):
        if not key or key[0] in "'\"&*!|>[]{}#-?" or ": " in key:
            raise NotSimple(f"key {key!r}")
        found = _key_line(indent, key).search(text, start, end)
        if found is None:
            return ABSENT
        rest = (found.group(1) or "").strip()
        after = found.end() + 1
        nxt = _NEXT_CONTENT.search(text, after, end)
        next_indent = len(nxt.group(1)) if nxt else -1
        if depth == len(path) - 1:
            return _value(rest, text, after, end, indent, nxt, next_indent)
        if rest:
            return ABSENT  # a scalar where a mapping was expected
        if nxt is None or next_indent <= indent:
            return ABSENT
        block = _block_end(indent).search(text, after, end)
        start, end, indent = after, block.start() if block else end, next_indent
    return ABSENT


def _value(
    rest: str, text: str, after: int, end: int, indent: int, nxt: re.Match | None, nxt_indent: int
) -> Any:
    if rest:
        if rest.startswith(("|", ">", "&", "*", "!")):
            raise NotSimple("block scalar, anchor or tag")
        if nxt is not None and nxt_indent > indent:
            raise NotSimple("a value continued on the next line")
        if " #" in rest and not rest.startswith(("'", '"')):
            rest = rest.split(" #", 1)[0].rstrip()
        value = _scalar(rest)
        return MAPPING if isinstance(value, dict) else value  # `{}` is an (empty) mapping too
    if nxt is None:
        return None
    is_item = nxt.group(2).startswith("-") and nxt.group(2)[1:2] in ("", " ")
    if nxt_indent > indent and not is_item:
        return MAPPING
    if not is_item or nxt_indent < indent:
        return None  # `key:` with nothing under it is null
    stop = _list_end(indent).search(text, after, end)
    block = text[after : stop.start() if stop else end]
    lines = [line[indent:] for line in block.splitlines()]
    try:
        return yaml.load("\n".join(lines), Loader=_LOADER)
    except yaml.YAMLError as err:
        raise NotSimple(str(err).splitlines()[0]) from None


def _scalar(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as err:
        raise NotSimple(str(err).splitlines()[0]) from None


def list_items(text: str) -> list[str]:
    """The items of a YAML list of strings (Hydra's overrides.yaml), quoted ones unquoted."""
    if text.strip() == "[]":
        return []
    items = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith("- "):
            raise NotSimple(f"not a list item: {line[:20]!r}")
        item = line[2:].strip()
        if item.startswith("'") and item.endswith("'") and len(item) >= 2:
            item = item[1:-1].replace("''", "'")
        elif item.startswith(('"', "&", "*", "!", "|", ">", "[", "{")):
            raise NotSimple("a quoted or special item")
        items.append(item)
    return items
