"""One report builder, two renderers (Markdown and PDF) over the same blocks, tables and figures.

Suites add blocks in reading order; `write()` renders both files from that single list, so the
Markdown and the PDF can never disagree. Tables are also saved as CSV, figures copied under
figures/, so the report folder is self-contained.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, StyleSheet1, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    Image,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from diamond.run.io import atomic_write_bytes, atomic_write_text

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MISSING = "–"
_MARGIN = 1.8 * cm
_PAGES = {"portrait": A4, "landscape": landscape(A4)}
# (orientation, font size) tried in order for a table; the first where every column fits its text wins.
_TABLE_LAYOUTS = [("portrait", 8.0), ("portrait", 7.0), ("landscape", 8.0), ("landscape", 7.0), ("landscape", 6.0)]
_CELL_PAD = 4.0  # points left and right of each cell
_MAX_HEADER_LINES = 3  # a header may wrap onto this many lines before the font shrinks further
_ROWS_WITH_HEADING = 3  # body rows a table's heading and caption keep with them on their page


@dataclass
class _Table:
    name: str
    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    caption: str


@dataclass
class _Figure:
    path: Path
    caption: str
    width_frac: float


def _format_cell(value: Any, float_fmt: str) -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return _MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return float_fmt.format(value)
    return str(value)


def _escape(text: str) -> str:
    """reportlab paragraphs parse XML-like markup: user text must not be read as tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _markup(text: str) -> str:
    """Light Markdown (**bold**, *italic*, `code`) to reportlab's paragraph markup, XML-escaped first."""
    text = _escape(text)
    text = re.sub(r"`([^`]+)`", r'<font face="DejaVuSansMono">\1</font>', text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?!\w)", r"<i>\1</i>", text)


@lru_cache(maxsize=1)
def _fonts() -> str:
    """Register DejaVu (shipped with matplotlib) so Greek letters, ≥, ± etc. render in the PDF."""
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    faces = {"DejaVuSans": "DejaVuSans.ttf", "DejaVuSans-Bold": "DejaVuSans-Bold.ttf",
             "DejaVuSans-Oblique": "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique": "DejaVuSans-BoldOblique.ttf",
             "DejaVuSansMono": "DejaVuSansMono.ttf"}
    for name, file in faces.items():
        pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
    pdfmetrics.registerFontFamily("DejaVuSans", normal="DejaVuSans", bold="DejaVuSans-Bold",
                                  italic="DejaVuSans-Oblique", boldItalic="DejaVuSans-BoldOblique")
    return "DejaVuSans"


def _styles() -> StyleSheet1:
    font = _fonts()
    styles = getSampleStyleSheet()
    for style in styles.byName.values():
        if isinstance(style, ParagraphStyle):
            bold = style.fontName.endswith("-Bold") or style.name.startswith(("Heading", "Title"))
            mono = style.fontName.startswith("Courier")
            style.fontName = "DejaVuSansMono" if mono else f"{font}-Bold" if bold else font
    styles.add(ParagraphStyle("Caption", parent=styles["BodyText"], fontName=f"{font}-Oblique", fontSize=8.5,
                              leading=11, textColor=colors.HexColor("#333333")))
    styles.add(ParagraphStyle("Banner", parent=styles["BodyText"], fontSize=10.5, leading=14,
                              textColor=colors.HexColor("#7a4b00")))
    return styles


def _frame_size(orientation: str) -> tuple[float, float]:
    width, height = _PAGES[orientation]
    return width - 2 * _MARGIN, height - 2 * _MARGIN


class Report:
    """Collects blocks in order; `write()` renders report.md and report.pdf under out_dir."""

    def __init__(self, title: str, out_dir: Path) -> None:
        self.title = title
        self.out_dir = Path(out_dir)
        self._blocks: list[tuple[str, Any]] = []
        self._figure_sources: dict[str, Path] = {}

    def banner(self, text: str) -> None:
        self._blocks.append(("banner", text))

    def heading(self, text: str, level: int = 2) -> None:
        if level not in (1, 2, 3, 4):
            raise ValueError(f"heading level must be 1, 2, 3 or 4, got {level}")
        self._blocks.append(("heading", (text, level)))

    def paragraph(self, text: str) -> None:
        self._blocks.append(("paragraph", text))

    def table(self, df: pd.DataFrame, name: str, caption: str = "", float_fmt: str = "{:.3g}") -> Path:
        """Add a table and write tables/<name>.csv (full precision); a named index becomes a column."""
        if not _NAME_RE.match(name):
            raise ValueError(f"table name {name!r} is not filesystem-safe; use letters, digits, '.', '_', '-'")
        if any(kind == "table" and block.name == name for kind, block in self._blocks):
            raise ValueError(f"table name {name!r} is used twice in report {self.title!r}")
        try:
            float_fmt.format(1.5)
        except (ValueError, IndexError, KeyError) as e:
            raise ValueError(f"float_fmt {float_fmt!r} is not a valid format for a float ({e})") from e
        flat = df if isinstance(df.index, pd.RangeIndex) else df.reset_index()
        if flat.columns.empty:
            raise ValueError(f"table {name!r} has no columns")
        header = [str(c) for c in flat.columns]
        numeric = [pd.api.types.is_numeric_dtype(flat[c]) and not pd.api.types.is_bool_dtype(flat[c])
                   for c in flat.columns]
        rows = [[_format_cell(v, float_fmt) for v in row] for row in flat.itertuples(index=False, name=None)]
        self._blocks.append(("table", _Table(name, header, rows, numeric, caption)))
        return atomic_write_text(self.out_dir / "tables" / f"{name}.csv", flat.to_csv(index=False))

    def figure(self, png: Path, caption: str = "", width_frac: float = 1.0) -> Path:
        """Add a PNG figure, copied under figures/ unless it already lives there."""
        png = Path(png)
        if not png.is_file():
            raise FileNotFoundError(f"figure {png} does not exist")
        data = png.read_bytes()
        if not data.startswith(_PNG_MAGIC):
            raise ValueError(f"figure {png} is not a PNG file")
        if not 0.0 < width_frac <= 1.0:
            raise ValueError(f"width_frac must be in (0, 1], got {width_frac}")
        dest = self.out_dir / "figures" / png.name
        previous = self._figure_sources.get(png.name)
        if previous is not None and previous.resolve() != png.resolve():
            raise ValueError(f"figures {previous} and {png} would both be saved as {dest}; rename one")
        self._figure_sources[png.name] = png
        if not dest.exists() or dest.resolve() != png.resolve():
            atomic_write_bytes(dest, data)
        self._blocks.append(("figure", _Figure(dest, caption, width_frac)))
        return dest

    def write(self) -> tuple[Path, Path]:
        md = atomic_write_text(self.out_dir / "report.md", self._markdown())
        pdf = atomic_write_bytes(self.out_dir / "report.pdf", self._pdf())
        return md, pdf

    # ---------------------------------------------------------------- Markdown

    def _markdown(self) -> str:
        parts = [f"# {self.title}"]
        for kind, block in self._blocks:
            if kind == "banner":
                parts.append(f"> **Warning:** {block}")
            elif kind == "heading":
                parts.append(f"{'#' * block[1]} {block[0]}")
            elif kind == "paragraph":
                parts.append(block)
            elif kind == "table":
                parts.append(_markdown_table(block))
            else:
                rel = block.path.relative_to(self.out_dir).as_posix()
                parts.append(f"![{block.caption or block.path.stem}]({rel})"
                             + (f"\n\n*{block.caption}*" if block.caption else ""))
        return "\n\n".join(parts) + "\n"

    # ---------------------------------------------------------------- PDF

    def _pdf(self) -> bytes:
        styles = _styles()
        buf = io.BytesIO()
        doc = BaseDocTemplate(buf, title=self.title, pagesize=A4, leftMargin=_MARGIN, rightMargin=_MARGIN,
                              topMargin=_MARGIN, bottomMargin=_MARGIN)
        doc.addPageTemplates([self._page_template(o, styles) for o in _PAGES])
        story: list[Flowable] = [Paragraph(_markup(self.title), styles["Title"])]
        orientation = "portrait"
        headings: list[Flowable] = []  # wait for the block they introduce: a heading never ends a page alone
        for kind, block in self._blocks:
            wanted = orientation
            if kind == "heading" and block[1] <= 2:  # a new section goes back to portrait
                wanted = "portrait"
            elif kind == "table":
                wanted, font_size, widths = _table_layout(block)
            if wanted != orientation:  # pending headings move to the new page with their block
                story += [NextPageTemplate(wanted), PageBreak()]
                orientation = wanted
            frame_w, frame_h = _frame_size(orientation)
            if kind == "heading":
                headings.append(Paragraph(_markup(block[0]), styles[f"Heading{block[1]}"]))
                continue
            if kind == "banner":
                parts = _banner(block, styles, frame_w)
            elif kind == "paragraph":
                parts = [Paragraph(_markup(block), styles["BodyText"])]
            elif kind == "table":
                parts = _pdf_table(block, styles, font_size, widths)
            else:
                parts = _pdf_figure(block, styles, frame_w, frame_h - _height(headings, frame_w, frame_h))
            if kind == "table":  # a table may span pages: keep its headings, caption and first rows on one
                start = _height(headings + parts[:-2], frame_w, frame_h) + _first_rows(parts[-2], frame_w, frame_h)
                story += [CondPageBreak(start), *headings, *parts]
            else:  # moves to the next page whole when it does not fit (a figure fits a page by construction)
                story.append(KeepTogether(headings + parts))
            headings = []
        story += headings
        doc.build(story)
        return buf.getvalue()

    def _page_template(self, orientation: str, styles: StyleSheet1) -> PageTemplate:
        width, height = _PAGES[orientation]
        frame = Frame(_MARGIN, _MARGIN, *_frame_size(orientation), leftPadding=0, rightPadding=0, topPadding=0,
                      bottomPadding=0, id=orientation)

        def footer(canvas: Any, doc: Any) -> None:
            canvas.saveState()
            canvas.setFont(styles["BodyText"].fontName, 7.5)
            canvas.setFillColor(colors.grey)
            canvas.drawString(_MARGIN, _MARGIN / 2, self.title)
            canvas.drawRightString(width - _MARGIN, _MARGIN / 2, f"page {doc.page}")
            canvas.restoreState()

        return PageTemplate(id=orientation, frames=[frame], pagesize=(width, height), onPage=footer)


def _markdown_table(t: _Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", r"\|").replace("\n", " ")

    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines.append("| " + " | ".join(cell(h) for h in t.header) + " |")
    lines.append("|" + "|".join("---:" if num else ":---" for num in t.numeric) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in t.rows]
    lines += ["", f"CSV: [tables/{t.name}.csv](tables/{t.name}.csv)"]
    return "\n".join(lines)


def _natural_widths(t: _Table, font_size: float) -> tuple[list[float], list[float]]:
    """Per column: width of the widest body cell, and of the header, on one line each."""
    font = _fonts()
    body, head = [], []
    for j, name in enumerate(t.header):
        body.append(max((pdfmetrics.stringWidth(row[j], font, font_size) for row in t.rows), default=0.0)
                    + 2 * _CELL_PAD)
        head.append(pdfmetrics.stringWidth(name, f"{font}-Bold", font_size) + 2 * _CELL_PAD)
    return body, head


def _table_layout(t: _Table) -> tuple[str, float, list[float]]:
    """Smallest change that keeps the table legible: shrink the font, then turn the page; then let
    headers wrap onto a few lines (body cells stay on one line); only then narrow body columns too."""
    for orientation, size in _TABLE_LAYOUTS:
        body, head = _natural_widths(t, size)
        if sum(map(max, body, head)) <= _frame_size(orientation)[0]:
            return orientation, size, list(map(max, body, head))
    for orientation, size in _TABLE_LAYOUTS:
        body, head = _natural_widths(t, size)
        least = [max(b, h / _MAX_HEADER_LINES) for b, h in zip(body, head)]
        spare = _frame_size(orientation)[0] - sum(least)
        if spare >= 0:  # share the spare width among the columns whose header still wraps
            want = [max(h - w, 0.0) for w, h in zip(least, head)]
            share = spare / sum(want) if sum(want) > 0 else 0.0
            return orientation, size, [w + share * x for w, x in zip(least, want)]
    orientation, size = _TABLE_LAYOUTS[-1]
    body, _ = _natural_widths(t, size)
    scale = _frame_size(orientation)[0] / sum(body)
    return orientation, size, [b * scale for b in body]


def _pdf_table(t: _Table, styles: StyleSheet1, font_size: float, widths: list[float]) -> list[Flowable]:
    leading = font_size * 1.2
    body = ParagraphStyle("cell", parent=styles["BodyText"], fontSize=font_size, leading=leading, spaceAfter=0,
                          spaceBefore=0)
    right = ParagraphStyle("cell-num", parent=body, alignment=TA_RIGHT)
    head = ParagraphStyle("cell-head", parent=body, fontName=f"{_fonts()}-Bold")
    head_right = ParagraphStyle("cell-head-num", parent=head, alignment=TA_RIGHT)

    def row_cells(values: list[str], header: bool) -> list[Paragraph]:
        return [Paragraph(_markup(v) if header else _escape(v),
                          (head_right if header else right) if num else (head if header else body))
                for v, num in zip(values, t.numeric)]

    data = [row_cells(t.header, True)] + [row_cells(r, False) for r in t.rows]
    table = Table(data, colWidths=widths, repeatRows=1, hAlign="CENTER")
    style = [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde3ea")),
             ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor("#44546a")),
             ("LINEBELOW", (0, -1), (-1, -1), 0.8, colors.HexColor("#44546a")),
             ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
             ("LEFTPADDING", (0, 0), (-1, -1), _CELL_PAD), ("RIGHTPADDING", (0, 0), (-1, -1), _CELL_PAD),
             ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]
    style += [("BACKGROUND", (0, i), (-1, i), colors.HexColor("#f4f6f8")) for i in range(2, len(data), 2)]
    table.setStyle(TableStyle(style))
    out: list[Flowable] = []
    if t.caption:
        out.append(Paragraph(f"<b>Table ({t.name}).</b> {_markup(t.caption)}", styles["Caption"]))
    return out + [table, Spacer(1, 0.4 * cm)]


def _height(flowables: list[Flowable], frame_w: float, frame_h: float) -> float:
    return sum(f.wrap(frame_w, frame_h)[1] + f.getSpaceBefore() + f.getSpaceAfter() for f in flowables)


def _first_rows(table: Table, frame_w: float, frame_h: float) -> float:
    """Height of a table's header and first body rows: what must follow its heading on the same page."""
    table.wrap(frame_w, frame_h)
    return sum(table._rowHeights[: 1 + _ROWS_WITH_HEADING])


def _pdf_figure(f: _Figure, styles: StyleSheet1, frame_w: float, frame_h: float) -> list[Flowable]:
    """Scale to the requested share of the frame width, then down again if it would not fit the height
    (`frame_h`: what is left of the frame once the headings above it are placed)."""
    px_w, px_h = ImageReader(str(f.path)).getSize()
    centred = ParagraphStyle("figure-caption", parent=styles["Caption"], alignment=TA_CENTER)
    caption = Paragraph(_markup(f.caption), centred) if f.caption else None
    parts: list[Flowable] = [Spacer(1, 0.15 * cm), caption] if caption else []
    parts.append(Spacer(1, 0.4 * cm))
    # everything below the image must fit on the same page, or a near-empty page follows
    below = sum(p.wrap(frame_w, frame_h)[1] + p.getSpaceBefore() + p.getSpaceAfter() for p in parts)
    room = frame_h - below - 2.0  # points of slack for rounding inside the frame
    width = f.width_frac * frame_w
    height = width * px_h / px_w
    if height > room:
        width, height = width * room / height, room
    return [Image(str(f.path), width=width, height=height)] + parts


def _banner(text: str, styles: StyleSheet1, frame_w: float) -> list[Flowable]:
    box = Table([[Paragraph(f"<b>Warning:</b> {_markup(text)}", styles["Banner"])]], colWidths=[frame_w])
    box.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fff3cd")),
                             ("BOX", (0, 0), (-1, -1), 1.5, colors.HexColor("#e0a800")),
                             ("LEFTPADDING", (0, 0), (-1, -1), 8), ("RIGHTPADDING", (0, 0), (-1, -1), 8),
                             ("TOPPADDING", (0, 0), (-1, -1), 6), ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))
    return [box, Spacer(1, 0.4 * cm)]
