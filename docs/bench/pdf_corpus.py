#!/usr/bin/env python3
"""Writes a corpus of PDFs made the ways real producers make them, to judge extraction beyond the
pdf.js sample: standard-14 fonts with justified paragraphs (word spacing by `Tw`), embedded
TrueType subsets, non-embedded CJK CID fonts (Japanese, Chinese, Korean), glyphs placed one by
one, two columns, right-to-left scripts, and one big file (500 pages with an image per page).

Usage: pdf_corpus.py DIR     (needs: pip install reportlab)
"""

import os
import random
import sys
import zlib

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas
from reportlab.platypus import Frame, Paragraph, SimpleDocTemplate, Spacer

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there been one all we their has would when if so no will more "
    "office difficult affinity final fluffy efficient field waffle shuffle official"
).split()
DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def prose(rng, words):
    out = []
    for i in range(words):
        w = rng.choice(WORDS)
        out.append(w.capitalize() if i % 12 == 0 else w)
        if i % 12 == 11:
            out[-1] += "."
    return " ".join(out)


def justified(path, rng, font, pages):
    style = ParagraphStyle("j", fontName=font, fontSize=10, leading=13, alignment=4)
    story = []
    for _ in range(pages * 5):
        story += [Paragraph(prose(rng, 90), style), Spacer(1, 6)]
    SimpleDocTemplate(path, pagesize=A4).build(story)


def cjk(path, font, text):
    pdfmetrics.registerFont(UnicodeCIDFont(font))
    c = canvas.Canvas(path, pagesize=A4)
    for p in range(3):
        c.setFont(font, 14)
        for line in range(20):
            c.drawString(60, 780 - line * 20, f"{p}-{line} {text}")
        c.showPage()
    c.save()


def glyph_by_glyph(path, rng):
    c = canvas.Canvas(path, pagesize=A4)
    for _ in range(3):
        for line in range(40):
            x = 50.0
            for w in prose(rng, 10).split():
                for ch in w:
                    c.setFont("Times-Roman", 11)
                    c.drawString(x, 800 - line * 18, ch)
                    x += pdfmetrics.stringWidth(ch, "Times-Roman", 11)
                x += 3.2
        c.showPage()
    c.save()


def two_columns(path, rng):
    style = ParagraphStyle("c", fontName="Helvetica", fontSize=9, leading=11)
    c = canvas.Canvas(path, pagesize=A4)
    for _ in range(4):
        for x in (40, 310):
            Frame(x, 40, 250, 760).addFromList([Paragraph(prose(rng, 400), style)], c)
        c.showPage()
    c.save()


def rtl(path):
    pdfmetrics.registerFont(TTFont("DejaVu", DEJAVU))
    c = canvas.Canvas(path, pagesize=A4)
    c.setFont("DejaVu", 14)
    lines = ["שלום עולם, זהו מסמך בעברית", "مرحبا بالعالم هذا مستند", "Mixed: English and עברית together"]
    for i, line in enumerate(lines * 5):
        c.drawString(60, 780 - i * 22, line)
    c.save()


def big(path, rng, pages):
    """`pages` pages of prose, each with an incompressible 32 KiB image (about 22 MiB)."""
    from PIL import Image  # reportlab's own dependency
    from reportlab.lib.utils import ImageReader

    c = canvas.Canvas(path, pagesize=A4)
    c.setPageCompression(1)
    for p in range(pages):
        img = Image.frombytes("RGB", (104, 104), os.urandom(104 * 104 * 3))
        c.drawImage(ImageReader(img), 400, 700, 128, 128)
        c.setFont("Helvetica", 10)
        text = prose(rng, 420).split()
        for line in range(60):
            c.drawString(40, 680 - line * 11, " ".join(text[line * 7 : line * 7 + 7]))
        c.showPage()
    c.save()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    rng = random.Random(17)
    pdfmetrics.registerFont(TTFont("DejaVuSans", DEJAVU))
    for i in range(5):
        justified(os.path.join(d, f"justified-helvetica-{i}.pdf"), rng, "Helvetica", 6)
        justified(os.path.join(d, f"justified-dejavu-{i}.pdf"), rng, "DejaVuSans", 6)
    cjk(os.path.join(d, "cjk-ja.pdf"), "HeiseiMin-W3", "日本語の文書です。検索できること")
    cjk(os.path.join(d, "cjk-zh.pdf"), "STSong-Light", "中文文档可以搜索")
    cjk(os.path.join(d, "cjk-tw.pdf"), "MSung-Light", "繁體中文文件")
    cjk(os.path.join(d, "cjk-ko.pdf"), "HYSMyeongJo-Medium", "한국어 문서입니다")
    glyph_by_glyph(os.path.join(d, "glyph-by-glyph.pdf"), rng)
    two_columns(os.path.join(d, "two-columns.pdf"), rng)
    rtl(os.path.join(d, "rtl.pdf"))
    if os.environ.get("BIG", "1") != "0":
        big(os.path.join(d, "big-500.pdf"), rng, 500)


if __name__ == "__main__":
    main()
