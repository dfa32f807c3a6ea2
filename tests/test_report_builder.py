"""Report builder: the same blocks rendered to Markdown and PDF; tables as CSV; figures embedded."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from pypdf import PdfReader  # noqa: E402

from reports.builder import Report  # noqa: E402

COLUMNS = ["game", "random", "human", "SimPLe", "TWM", "IRIS", "DreamerV3", "STORM", "DIAMOND (ours)"]


def score_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    games = [f"Game{i:02d}" for i in range(30)]
    data = {c: rng.uniform(0, 5000, size=30) for c in COLUMNS[1:]}
    df = pd.DataFrame({"game": games, **data})
    df.loc[3, "TWM"] = np.nan
    df.loc[0, "DIAMOND (ours)"] = 4031.2
    return df


def make_png(path: Path, seed: int, size: tuple[float, float]) -> Path:
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=size, dpi=60)
    ax.plot(rng.normal(size=50).cumsum())
    fig.savefig(path)
    plt.close(fig)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path, Path, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("report")
    df = score_table()
    report = Report("Atari 100k (smoke)", tmp / "out")
    report.banner("profile is **smoke**: numbers not comparable to the paper")
    report.heading("Scores")
    report.paragraph("Per-game returns, `mean over 5 seeds`; λ-returns with γ ≥ 0.985.")
    report.table(df, "scores", caption="Returns per game.", float_fmt="{:.1f}")
    report.heading("Figures")
    report.figure(make_png(tmp / "curve.png", 0, (6, 3)), caption="Training curve.")
    report.figure(make_png(tmp / "tall.png", 1, (3, 12)), caption="A tall figure.", width_frac=0.8)
    md, pdf = report.write()
    return report, md, pdf, df


def test_pdf_text_images_and_pages(built) -> None:
    _, _, pdf, _ = built
    reader = PdfReader(str(pdf))
    assert 2 <= len(reader.pages) <= 6
    text = "\n".join(page.extract_text() for page in reader.pages)
    for name in COLUMNS:
        assert name in text, f"header {name!r} not extractable from the PDF"
    assert "4031.2" in text and "Game29" in text and "Warning:" in text and "γ ≥ 0.985" in text
    assert sum(len(page.images) for page in reader.pages) == 2
    assert "Game00" in reader.pages[0].extract_text(), "a table that fits should start on page 1"
    for i, page in enumerate(reader.pages):
        body = page.extract_text().replace("Atari 100k (smoke)", "").replace(f"page {i + 1}", "").strip()
        assert body or page.images, f"page {i + 1} is empty"
    for caption in ("Training curve.", "A tall figure."):
        page = next(p for p in reader.pages if caption in p.extract_text())
        assert page.images, f"figure captioned {caption!r} is not on the page of its caption"


def test_wide_table_turns_the_page_without_wrapping_cells(tmp_path: Path) -> None:
    wide = pd.DataFrame({f"a_rather_long_column_name_{i}": np.linspace(0, 1, 12) * i for i in range(14)})
    wide.insert(0, "game", [f"VeryLongGameName{i}" for i in range(12)])
    report = Report("wide", tmp_path)
    report.paragraph("before")
    report.table(wide, "wide")
    report.heading("after")
    _, pdf = report.write()
    pages = PdfReader(str(pdf)).pages
    orientation = ["landscape" if p.mediabox.width > p.mediabox.height else "portrait" for p in pages]
    assert orientation == ["portrait", "landscape", "portrait"]
    text = pages[1].extract_text()
    assert "VeryLongGameName10" in text and "VeryLongGameName11" in text


def test_long_table_splits_with_repeated_header(tmp_path: Path) -> None:
    df = pd.DataFrame({"run": [f"r{i}" for i in range(150)], "score": np.arange(150) * 1.5})
    report = Report("long", tmp_path)
    report.table(df, "long")
    _, pdf = report.write()
    pages = [p.extract_text() for p in PdfReader(str(pdf)).pages]
    assert len(pages) >= 2
    assert all("score" in p for p in pages), "the header row must repeat on every page"
    assert "r149\n 224" in pages[-1]  # 223.5 with the default {:.3g}


def test_markdown_table_and_relative_image_links(built) -> None:
    report, md, _, df = built
    text = md.read_text()
    assert text.startswith("# Atari 100k (smoke)\n")
    assert "> **Warning:** profile is **smoke**" in text
    assert "| " + " | ".join(COLUMNS) + " |" in text
    assert "|:---|" + "|".join(["---:"] * 8) + "|" in text
    assert f"| Game00 | {df.loc[0, 'random']:.1f} |" in text and "| 4031.2 |" in text
    row3 = next(line for line in text.splitlines() if line.startswith("| Game03 "))
    assert "| – |" in row3
    assert re.findall(r"!\[[^]]*\]\(([^)]+)\)", text) == ["figures/curve.png", "figures/tall.png"]
    for link in ("figures/curve.png", "figures/tall.png"):
        assert (report.out_dir / link).is_file()


def test_csv_round_trips(built) -> None:
    report, _, _, df = built
    back = pd.read_csv(report.out_dir / "tables" / "scores.csv")
    pd.testing.assert_frame_equal(back, df)


def test_named_index_becomes_a_column(tmp_path: Path) -> None:
    df = pd.DataFrame({"iqm": [0.5, 1.2]}, index=pd.Index(["EDM", "DDPM"], name="paradigm"))
    report = Report("t", tmp_path)
    csv = report.table(df, "agg")
    assert pd.read_csv(csv).columns.tolist() == ["paradigm", "iqm"]
    assert "| paradigm | iqm |" in report.write()[0].read_text()


def test_invalid_inputs(tmp_path: Path) -> None:
    report = Report("t", tmp_path / "out")
    with pytest.raises(ValueError, match="filesystem-safe"):
        report.table(pd.DataFrame({"a": [1]}), "bad name")
    report.table(pd.DataFrame({"a": [1]}), "t1")
    with pytest.raises(ValueError, match="used twice"):
        report.table(pd.DataFrame({"a": [1]}), "t1")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        report.figure(tmp_path / "missing.png")
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(ValueError, match="not a PNG"):
        report.figure(tmp_path / "fake.png")
    with pytest.raises(ValueError, match="heading level"):
        report.heading("x", level=7)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    report.figure(make_png(tmp_path / "a" / "f.png", 0, (2, 2)))
    with pytest.raises(ValueError, match="rename one"):
        report.figure(make_png(tmp_path / "b" / "f.png", 1, (2, 2)))


def _page_of(reader: PdfReader, text: str) -> int:
    pages = [i for i, page in enumerate(reader.pages) if text in page.extract_text()]
    assert len(pages) == 1, (text, pages)
    return pages[0]


@pytest.mark.parametrize("filler", range(30, 46, 3))
def test_headings_stay_with_the_figure_or_table_they_introduce(tmp_path: Path, filler: int) -> None:
    """Whatever the text above, a heading never ends a page: it lands on the page of the figure it introduces,
    and a heading over a table that needs a landscape page moves to that page with it."""
    report = Report("Headings", tmp_path / "out")
    report.paragraph(" ".join(["Filler text that pushes the next heading down the page."] * filler))
    report.heading("Figure heading")
    report.figure(make_png(tmp_path / "fig.png", 0, (6, 4)), caption="The figure.")
    report.heading("Wide section")
    report.heading("Wide table heading", level=3)
    wide = pd.DataFrame({f"a rather long column name {i}": np.arange(3) * 1000.5 for i in range(14)})
    report.table(wide, "wide", caption="A table that needs a landscape page.")
    _, pdf = report.write()
    reader = PdfReader(str(pdf))
    figure_page = _page_of(reader, "Figure heading")
    assert len(reader.pages[figure_page].images) == 1
    table_page = _page_of(reader, "Wide table heading")
    assert "A table that needs a landscape page." in reader.pages[table_page].extract_text()
    box = reader.pages[table_page].mediabox
    assert box.width > box.height, "the heading is on the table's landscape page"


def test_reports_never_import_ablations() -> None:
    """Layers import downward only (run_suite -> ablations -> reports -> ...): a suite hands its report builder its
    constants; a report module that imported its suite back would close a cycle. Lazy imports count too."""
    import ast

    offenders = []
    for path in sorted((Path(__file__).parents[1] / "reports").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names
                          if n == "ablations" or n.startswith("ablations.")]
    assert not offenders, offenders
