"""Render a terminal screen captured by tmux (``tmux capture-pane -p -e``, ANSI colours kept) into a PNG.

    tmux new-session -d -s leet -x 150 -y 42 "wandb leet multirun/DATE/TIME-ID/wandb"
    # select runs with space, page the metrics with n / N, then:
    tmux capture-pane -t leet -p -e > leet.ansi && python docs/render_terminal.py leet.ansi docs/wandb-leet.png

Braille (the dots of the plots) is drawn as dots: the monospace font has no glyphs for it.
"""

from __future__ import annotations

import re
import sys

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
DEFAULT = (220, 220, 220)
BASE = [(40, 40, 40), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200), (188, 63, 188),
        (17, 168, 205), (229, 229, 229)]  # fmt: skip
BRIGHT = [(102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67), (59, 142, 234), (214, 112, 214),
          (41, 184, 219), (255, 255, 255)]  # fmt: skip
BRAILLE_DOTS = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (0, 3), (1, 3)]  # bit -> (column, row)


def colour_256(n: int) -> tuple[int, int, int]:
    if n < 16:
        return (BASE + BRIGHT)[n]
    if n < 232:
        n -= 16
        return tuple(0 if v == 0 else 55 + 40 * v for v in (n // 36, (n // 6) % 6, n % 6))
    grey = 8 + 10 * (n - 232)
    return grey, grey, grey


def apply_sgr(codes: list[int], fg, bg):
    """The colours after one ``ESC[...m`` sequence."""
    i = 0
    while i < len(codes):
        c = codes[i]
        if c == 0:
            fg, bg = DEFAULT, None
        elif 30 <= c <= 37 or 90 <= c <= 97:
            fg = (BASE if c < 90 else BRIGHT)[c % 10]
        elif 40 <= c <= 47:
            bg = BASE[c - 40]
        elif c == 39:
            fg = DEFAULT
        elif c == 49:
            bg = None
        elif c in (38, 48) and i + 2 < len(codes):
            if codes[i + 1] == 5:
                colour, i = colour_256(codes[i + 2]), i + 2
            else:
                colour, i = tuple(codes[i + 2 : i + 5]), i + 4
            fg, bg = (colour, bg) if c == 38 else (fg, colour)
        i += 1
    return fg, bg


def render(lines: list[str], path: str, columns: int = 150) -> None:
    font = ImageFont.truetype(FONT, 14)
    cw, ch = int(font.getlength("M")), 18
    image = Image.new("RGB", (columns * cw + 20, len(lines) * ch + 20), (24, 24, 27))
    draw = ImageDraw.Draw(image)
    for y, line in enumerate(lines):
        fg, bg, x = DEFAULT, None, 0
        for part in re.split(r"(\x1b\[[0-9;]*m)", line):
            if part.startswith("\x1b["):
                fg, bg = apply_sgr([int(c) if c else 0 for c in part[2:-1].split(";")], fg, bg)
                continue
            for char in part:
                px, py = 10 + x * cw, 10 + y * ch
                if bg:
                    draw.rectangle([px, py, px + cw, py + ch], fill=bg)
                dots = ord(char) - 0x2800
                if 0 <= dots < 256:
                    for bit, (dx, dy) in enumerate(BRAILLE_DOTS):
                        if dots >> bit & 1:
                            cx, cy = px + 2 + dx * (cw // 2), py + 2 + dy * (ch // 4)
                            draw.rectangle([cx, cy, cx + 2, cy + 2], fill=fg)
                else:
                    draw.text((px, py), char, font=font, fill=fg)
                x += 1
    image.save(path)


if __name__ == "__main__":
    render(open(sys.argv[1], encoding="utf-8").read().rstrip("\n").split("\n"), sys.argv[2])
