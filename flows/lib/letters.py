"""Letters as PDF: the HTML of `flows.lib.templates.render_letter` laid out by fpdf2.

US Letter, DejaVu Sans (shipped in `contact_templates/_fonts/`, so any customer name prints:
the PDF core fonts stop at Latin-1), page numbers in the footer. The output is deterministic:
the creation date comes from the caller and the file id is a hash of the content, so the same
letter rendered twice gives the same bytes (and the same file in the outbox).

fpdf2 reads a subset of HTML (https://py-pdf.github.io/fpdf2/HTML.html): p, br, b, font, h1-h6,
ul/li, hr and tables whose cells hold text only. There is no italic face: no <i> or <em>.
"""

from __future__ import annotations

import datetime as dt

from fpdf import FPDF, FontFace, TextStyle

from flows.lib.templates import TEMPLATES_DIR

FONTS_DIR = TEMPLATES_DIR / "_fonts"
FONT_FAMILY = "DejaVu"
BODY_SIZE_PT = 10
INK = "#1a1a1a"
# Headings dark and a little larger than the body, instead of fpdf2's red defaults.
TAG_STYLES = {
    # t_margin is in mm; b_margin is a fraction of the heading's own size
    "h1": TextStyle(font_style="B", font_size_pt=14, color=INK, t_margin=6, b_margin=0.8),
    "h2": TextStyle(font_style="B", font_size_pt=12, color=INK, t_margin=5, b_margin=0.3),
    "h3": TextStyle(font_style="B", font_size_pt=11, color=INK, t_margin=5, b_margin=0.3),
    "h4": TextStyle(font_style="B", font_size_pt=10, color=INK, t_margin=3, b_margin=0.2),
    "li": TextStyle(l_margin=4, t_margin=1),
    "code": FontFace(family=FONT_FAMILY),
    "pre": TextStyle(font_family=FONT_FAMILY),
}


class _LetterPDF(FPDF):
    def footer(self) -> None:
        self.set_y(-11)
        self.set_font(FONT_FAMILY, size=7)
        self.set_text_color(110)
        self.cell(0, 4, f"{self.page_no()}/{{nb}}", align="R")


def letter_pdf(html: str, *, title: str, created: dt.datetime) -> bytes:
    """The letter's PDF; `created` (timezone-aware) becomes the PDF's creation date."""
    if created.tzinfo is None:
        raise ValueError(
            f"letter_pdf: created={created.isoformat()} has no time zone; pass an aware "
            "datetime such as dt.datetime.now(dt.UTC), so the PDF is the same on every machine"
        )
    pdf = _LetterPDF(orientation="portrait", unit="mm", format="letter")
    pdf.add_font(FONT_FAMILY, "", FONTS_DIR / "DejaVuSans.ttf")
    pdf.add_font(FONT_FAMILY, "B", FONTS_DIR / "DejaVuSans-Bold.ttf")
    pdf.set_margins(left=25, top=15, right=25)
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.set_title(title)
    pdf.set_creator("recoup")
    pdf.set_creation_date(created)
    pdf.set_font(FONT_FAMILY, size=BODY_SIZE_PT)
    pdf.set_text_color(INK)
    pdf.add_page()
    pdf.write_html(
        html,
        font_family=FONT_FAMILY,
        tag_styles=TAG_STYLES,
        li_prefix_color=INK,
        ul_bullet_char="•",
        table_line_separators=True,
    )
    return bytes(pdf.output())
