"""Writes images/icon.png (128x128 RGBA): code lines, a cursor and ghost text on a rounded square.

Standard library only (zlib + struct), so it runs anywhere: python3 scripts/make_icon.py
"""

import struct
import zlib
from pathlib import Path

SIZE = 128
SAMPLES = 4  # supersampling per axis, for smooth edges


def rounded_rect(x, y, left, top, right, bottom, radius):
    if not (left <= x <= right and top <= y <= bottom):
        return False
    cx = min(max(x, left + radius), right - radius)
    cy = min(max(y, top + radius), bottom - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


BACKGROUND_TOP, BACKGROUND_BOTTOM = (31, 58, 95), (17, 94, 89)
WHITE, GHOST, AMBER = (245, 247, 250, 255), (245, 247, 250, 110), (255, 184, 28, 255)
# (left, top, right, bottom, colour): three typed lines, then the cursor and the suggested rest.
SHAPES = [
    (22, 30, 78, 42, WHITE),
    (34, 50, 96, 62, WHITE),
    (34, 70, 58, 82, WHITE),
    (61, 66, 66, 86, AMBER),
    (70, 70, 106, 82, GHOST),
    (22, 90, 70, 102, GHOST),
]


def pixel(x, y):
    if not rounded_rect(x, y, 2, 2, SIZE - 2, SIZE - 2, 22):
        return (0, 0, 0, 0)
    t = y / SIZE
    colour = [round(a + (b - a) * t) for a, b in zip(BACKGROUND_TOP, BACKGROUND_BOTTOM, strict=True)] + [255]
    for left, top, right, bottom, (r, g, b, a) in SHAPES:
        if rounded_rect(x, y, left, top, right, bottom, 5 if right - left > 8 else 2):
            alpha = a / 255
            colour = [round(c * (1 - alpha) + v * alpha) for c, v in zip(colour[:3], (r, g, b), strict=True)]
            colour.append(255)
    return tuple(colour)


def main():
    rows = []
    for py in range(SIZE):
        row = bytearray([0])  # filter: none
        for px in range(SIZE):
            total = [0, 0, 0, 0]
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    sample = pixel(px + (sx + 0.5) / SAMPLES, py + (sy + 0.5) / SAMPLES)
                    total = [t + s for t, s in zip(total, sample, strict=True)]
            row += bytes(round(t / SAMPLES**2) for t in total)
        rows.append(bytes(row))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
    png += chunk(b"IEND", b"")
    out = Path(__file__).resolve().parent.parent / "images" / "icon.png"
    out.write_bytes(png)
    print(f"wrote {out} ({len(png)} bytes)")


if __name__ == "__main__":
    main()
