"""A report as a list of sections, written twice: ``report.html`` (self-contained: inline CSS, every image a
base64 ``data:`` URI, no script, no network) and ``report.md`` (the PNGs beside it by file name)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f6f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fff1f0; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
code { font-size: 0.9em; } .note { color: #666; }
"""


@dataclass
class Table:
    """A table; ``failed`` marks rows (by index) drawn as failed jobs."""

    header: list[str]
    rows: list[list[str]]
    failed: set[int] = field(default_factory=set)


@dataclass
class Image:
    path: Path
    alt: str


@dataclass
class Note:
    text: str


Block = Union[Table, Image, Note]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def write_html(title: str, sections: list[Section], path: Path) -> Path:
    """``report.html``: every image read and embedded (PNG, base64)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.extend(_html_block(block) for block in section.blocks)
    parts.append("</body></html>\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _html_block(block: Block) -> str:
    if isinstance(block, Note):
        return f'<p class="note">{html.escape(block.text)}</p>'
    if isinstance(block, Image):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        return f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
    rows = []
    for i, row in enumerate(block.rows):
        cells = "".join(f'<td class="num">{html.escape(c)}</td>' if _is_number(c) else f"<td>{html.escape(c)}</td>"
                        for c in row)
        rows.append(f'<tr class="failed">{cells}</tr>' if i in block.failed else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_markdown(title: str, sections: list[Section], path: Path) -> Path:
    """``report.md``: the same sections; images by their file name (they lie beside it)."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += [*_md_block(block, path.parent), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _md_block(block: Block, root: Path) -> list[str]:
    if isinstance(block, Note):
        return [f"_{_md_escape(block.text)}_"]
    if isinstance(block, Image):
        name = block.path.relative_to(root) if block.path.is_relative_to(root) else block.path
        return [f"![{_md_escape(block.alt)}]({name.as_posix()})"]
    lines = ["| " + " | ".join(_md_escape(h) for h in block.header) + " |",
             "|" + "|".join("---:" if _is_number(c) else "---" for c in (block.rows[0] if block.rows else
                                                                         block.header)) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in block.rows]
    return lines


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%x"))
    except ValueError:
        return False
    return True
