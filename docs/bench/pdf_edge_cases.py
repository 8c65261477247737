#!/usr/bin/env python3
"""Writes 15 small hand-made PDFs, one per failure mode of PDF text extraction:
truncated and raw deflate, Type 3, stray operators, the quote operators, a missing font or
MediaBox, ligatures through ToUnicode, code-point glyph names, an unterminated inline image,
no endstream, hex strings. Compare both sides with pdf_coverage.py (see docs/benchmarks.md).

Usage: pdf_edge_cases.py DIR
"""
import zlib, os, sys
D = sys.argv[1]
os.makedirs(D, exist_ok=True)

def pdf(objs, root=1):
    out = bytearray(b"%PDF-1.4\n")
    offs = []
    for i, o in enumerate(objs, 1):
        offs.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    x = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for o in offs:
        out += b"%010d 00000 n \n" % o
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, root, x)
    return bytes(out)

def stream(data, extra=b""):
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"

def simple(content, font=b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>", extra=b"", more=[]):
    return pdf([b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
                content if content.startswith(b"<<") else stream(content, extra),
                font] + more)

T = b"BT /F1 12 Tf 72 700 Td (Hello searchable world) Tj ET"
w = lambda n, b: open(os.path.join(D, n), "wb").write(b)
# 1 truncated flate content
z = zlib.compress(T * 20)
w("truncated-flate.pdf", simple(z[:-12], extra=b"/Filter /FlateDecode"))
# 2 raw deflate without zlib header
c = zlib.compressobj(wbits=-15); raw = c.compress(T) + c.flush()
w("raw-deflate.pdf", simple(raw, extra=b"/Filter /FlateDecode"))
# 3 Type3 font
t3 = b"<< /Type /Font /Subtype /Type3 /FontBBox [0 0 1000 1000] /FontMatrix [0.001 0 0 0.001 0 0] /CharProcs << /a 6 0 R >> /Encoding << /Type /Encoding /Differences [65 /H /e /l /o /space /w /r /d] >> /FirstChar 65 /LastChar 72 /Widths [500 500 500 500 500 500 500 500] /Resources << >> >>"
w("type3.pdf", simple(b"BT /F1 12 Tf 72 700 Td (ABCCDEFDGCH) Tj ET", font=t3, more=[stream(b"500 0 d0")]))
# 4 garbage operators in content
w("garbage-ops.pdf", simple(b"q 1 0 0 1 0 0 cm ]] >> foo bar 12 } BT /F1 12 Tf 72 700 Td (Hello searchable world) Tj ET Q"))
# 5 TJ kerning as spaces (LaTeX style)
w("tj-spacing.pdf", simple(b"BT /F1 12 Tf 72 700 Td [(Hello)-333(searchable)-333(world)] TJ ET"))
# 6 Contents array with a missing ref and null
w("contents-missing.pdf", pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
   b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents [9 0 R null 4 0 R] >>",
   stream(T), b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]))
# 7 ligature via ToUnicode
cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /X def 1 begincodespacerange <00> <FF> endcodespacerange 3 beginbfchar <41> <FB01> <42> <0065> <43> <006C> endbfchar endcmap CMapName currentdict /CMap defineresource pop end end"
w("ligature.pdf", simple(b"BT /F1 12 Tf 72 700 Td (ABC) Tj ET", font=b"<< /Type /Font /Subtype /Type1 /BaseFont /Foo /ToUnicode 6 0 R >>", more=[stream(cmap)]))
# 8 no MediaBox
w("no-mediabox.pdf", pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
   b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>", stream(T), b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]))
# 9 font missing from resources
w("font-missing.pdf", simple(b"BT /F9 12 Tf 72 700 Td (Hello searchable world) Tj ET"))
# 10 ' and " operators
w("quote-ops.pdf", simple(b"BT /F1 12 Tf 14 TL 72 700 Td (Hello) Tj (searchable) ' 1 2 (world) \" ET"))
# 11 two pages, one broken content (inline image garbage w/o EI), other fine
w("page-broken.pdf", pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 6 0 R] /Count 2 >>",
   b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>", stream(T),
   b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
   b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 7 0 R >>",
   stream(b"BT /F1 12 Tf 72 700 Td (Second page text) Tj ET BI /W 4 /H 4 /BPC 8 /CS /G ID \x00\xff\x12(\x29 ")]))
# 12 Widths / font is Symbolic TrueType without encoding
w("truetype-noenc.pdf", simple(T, font=b"<< /Type /Font /Subtype /TrueType /BaseFont /Arial /FirstChar 32 /LastChar 126 >>"))
# 13 wrong Length and no endstream
w("no-endstream.pdf", simple(b"<< /Length 9999 >>\nstream\n" + T + b"\n"))
# 14 hex strings and escapes
w("hex-string.pdf", simple(b"BT /F1 12 Tf 72 700 Td <48656c6c6f20736561726368> Tj ( \\(able\\) w\\157rld) Tj ET"))
# 15 Differences with uniXXXX / glyph names
w("differences-uni.pdf", simple(b"BT /F1 12 Tf 72 700 Td (ABC) Tj ET", font=b"<< /Type /Font /Subtype /Type1 /BaseFont /Foo /Encoding << /Differences [65 /uni0048 /afii10017 /g42] >> >>"))
