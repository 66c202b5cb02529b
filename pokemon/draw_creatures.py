"""Draw six original, cute fantasy creatures as 512×512 PNGs using nothing but Pillow.

Usage::

    python pokemon/draw_creatures.py [--out DIR]

Every shape is built from fixed numbers (and one seeded ``random.Random`` for the night sky), so the
output is pixel-identical from run to run. Each creature is painted on a 2× canvas and downsampled with
LANCZOS, which is the cheapest way to get smooth anti-aliased edges out of ``ImageDraw``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

SIZE = 512
SCALE = 2
CANVAS = SIZE * SCALE
# Outline thickness on the 2× canvas; ~4.5 px after downsampling reads as "sticker art" at 512 px.
OUTLINE = 9

RGB = tuple[int, int, int]
Point = tuple[float, float]
Box = tuple[float, float, float, float]

WHITE: RGB = (255, 255, 255)
INK: RGB = (45, 34, 60)  # a purple-black reads softer than pure black for pupils and mouths.
BLUSH: RGB = (255, 128, 150)
TONGUE: RGB = (255, 143, 158)


# --------------------------------------------------------------------------- colours


def rgb(code: str) -> RGB:
    """Parse ``#rrggbb``; palettes read far better as hex than as tuples."""
    code = code.lstrip("#")
    return (int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def darker(color: RGB, amount: float = 0.25) -> RGB:
    # Shadows drift towards violet rather than grey so that shading stays lively instead of muddy.
    return mix(color, (40, 20, 70), amount)


def lighter(color: RGB, amount: float = 0.4) -> RGB:
    return mix(color, WHITE, amount)


# --------------------------------------------------------------------------- geometry


def box(cx: float, cy: float, rx: float, ry: float | None = None) -> Box:
    ry = rx if ry is None else ry
    return (cx - rx, cy - ry, cx + rx, cy + ry)


def midpoint(a: Point, b: Point) -> Point:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


def rotate(points: Sequence[Point], center: Point, angle: float) -> list[Point]:
    cx, cy = center
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    offsets = [(px - cx, py - cy) for px, py in points]
    return [(cx + x * cos_a - y * sin_a, cy + x * sin_a + y * cos_a) for x, y in offsets]


def quad(p0: Point, p1: Point, p2: Point, steps: int = 24) -> list[Point]:
    """Quadratic Bézier sampled into points (end point excluded so paths can be chained)."""
    pts: list[Point] = []
    for i in range(steps):
        t = i / steps
        u = 1 - t
        pts.append(
            (
                u * u * p0[0] + 2 * u * t * p1[0] + t * t * p2[0],
                u * u * p0[1] + 2 * u * t * p1[1] + t * t * p2[1],
            )
        )
    return pts


def cubic(p0: Point, p1: Point, p2: Point, p3: Point, steps: int = 32) -> list[Point]:
    """Cubic Bézier sampled into points (end point excluded so paths can be chained)."""
    pts: list[Point] = []
    for i in range(steps):
        t = i / steps
        u = 1 - t
        a, b, c, d = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
        pts.append(
            (
                a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0],
                a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1],
            )
        )
    return pts


def leaf(base: Point, tip: Point, width: float, bend: float = 0.0) -> list[Point]:
    """A pointed almond (leaf, fin, ear) from ``base`` to ``tip``; ``bend`` curves it sideways."""
    mx, my = (base[0] + tip[0]) / 2, (base[1] + tip[1]) / 2
    dx, dy = tip[0] - base[0], tip[1] - base[1]
    length = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length
    side_a = (mx + nx * (width + bend), my + ny * (width + bend))
    side_b = (mx - nx * (width - bend), my - ny * (width - bend))
    return quad(base, side_a, tip) + quad(tip, side_b, base)


def teardrop(center: Point, radius: float, tip: Point, curl: float = 0.0) -> list[Point]:
    """A round blob that tapers into ``tip``; ``curl`` swings the tip sideways like a flame lick."""
    cx, cy = center
    dist = math.hypot(tip[0] - cx, tip[1] - cy)
    heading = math.atan2(tip[1] - cy, tip[0] - cx)
    # The taper leaves the circle where a tangent from the tip would touch it, so the join is smooth.
    spread = math.acos(min(0.999, radius / dist))
    start, end = heading + spread, heading + 2 * math.pi - spread
    arc = [
        (
            cx + radius * math.cos(start + (end - start) * i / 48),
            cy + radius * math.sin(start + (end - start) * i / 48),
        )
        for i in range(49)
    ]
    nx, ny = -math.sin(heading), math.cos(heading)
    mid_r = radius * 0.55
    mx = cx + math.cos(heading) * (radius + dist) / 2
    my = cy + math.sin(heading) * (radius + dist) / 2
    ctrl_a = (mx + nx * (-mid_r + curl), my + ny * (-mid_r + curl))
    ctrl_b = (mx + nx * (mid_r + curl), my + ny * (mid_r + curl))
    return arc + quad(arc[-1], ctrl_a, tip) + quad(tip, ctrl_b, arc[0])


def star(cx: float, cy: float, outer: float, inner: float, points: int = 4, turn: float = 0.0) -> list[Point]:
    pts: list[Point] = []
    for i in range(points * 2):
        r = outer if i % 2 == 0 else inner
        a = turn + math.pi * i / points - math.pi / 2
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def scallop(cx: float, cy: float, radius: float, bumps: int, depth: float, turn: float = 0.0) -> list[Point]:
    """A fluffy cloud/puff outline: a circle whose radius ripples ``bumps`` times."""
    pts: list[Point] = []
    for i in range(360):
        a = 2 * math.pi * i / 360
        r = radius + depth * abs(math.cos(bumps * (a + turn) / 2))
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


# --------------------------------------------------------------------------- masks


def blank() -> Image.Image:
    return Image.new("L", (CANVAS, CANVAS), 0)


def ellipse_mask(b: Box) -> Image.Image:
    mask = blank()
    ImageDraw.Draw(mask).ellipse(b, fill=255)
    return mask


def poly_mask(points: Sequence[Point]) -> Image.Image:
    mask = blank()
    ImageDraw.Draw(mask).polygon(list(points), fill=255)
    return mask


def above(y: float) -> Image.Image:
    """Everything above a horizontal line; used to slice domes and mouths flat."""
    return poly_mask([(0, 0), (CANVAS, 0), (CANVAS, y), (0, y)])


def below(y: float) -> Image.Image:
    return poly_mask([(0, y), (CANVAS, y), (CANVAS, CANVAS), (0, CANVAS)])


def union(*masks: Image.Image) -> Image.Image:
    out = masks[0]
    for m in masks[1:]:
        out = ImageChops.lighter(out, m)
    return out


def intersect(a: Image.Image, b: Image.Image) -> Image.Image:
    return ImageChops.multiply(a, b)


def minus(a: Image.Image, b: Image.Image) -> Image.Image:
    return ImageChops.subtract(a, b)


def shifted(mask: Image.Image, dx: int, dy: int) -> Image.Image:
    # ImageChops.offset wraps around the edges; pasting onto a blank keeps edge shapes from leaking in.
    out = blank()
    out.paste(mask, (dx, dy))
    return out


def scaled(mask: Image.Image, opacity: float) -> Image.Image:
    return mask.point(lambda v: round(v * opacity))


def dilate(mask: Image.Image, radius: float) -> Image.Image:
    """Grow a mask by ~``radius`` px: blur then threshold low, far faster than a MaxFilter this wide."""
    blurred = mask.filter(ImageFilter.GaussianBlur(radius / 2))
    # At sigma = radius/2 an edge `radius` px away sits at ~2.3 % (≈6/255); the ramp keeps the rim smooth.
    return blurred.point(lambda v: 0 if v < 3 else 255 if v > 9 else (v - 3) * 42)


def soft(mask: Image.Image, radius: float) -> Image.Image:
    return mask.filter(ImageFilter.GaussianBlur(radius))


# --------------------------------------------------------------------------- painting


def fill(img: Image.Image, mask: Image.Image, color: RGB, opacity: float = 1.0) -> None:
    img.paste(color, (0, 0, CANVAS, CANVAS), mask if opacity >= 1.0 else scaled(mask, opacity))


def add_volume(img: Image.Image, mask: Image.Image, color: RGB, depth: int = 34) -> None:
    """Fake a top-left light: darken the lower-right rim and add a soft sheen near the top-left."""
    inner = soft(shifted(mask, -depth, -depth), depth * 0.6)
    rim = intersect(mask, ImageChops.invert(inner))
    fill(img, rim, darker(color, 0.28), 0.75)
    bbox = mask.getbbox()
    if bbox is None:
        return
    x0, y0, x1, y1 = bbox
    w, h = x1 - x0, y1 - y0
    sheen = soft(ellipse_mask(box(x0 + w * 0.36, y0 + h * 0.3, w * 0.24, h * 0.18)), min(w, h) * 0.08)
    fill(img, intersect(mask, sheen), lighter(color, 0.55), 0.55)


def paint(
    img: Image.Image,
    mask: Image.Image,
    color: RGB,
    outline: RGB | None = None,
    volume: bool = True,
    width: float = OUTLINE,
    opacity: float = 1.0,
) -> None:
    """Paint a part the way a sticker is cut: coloured outline first, then fill, then shading."""
    if outline is not None:
        # Only the ring outside the part is inked, so a translucent fill never shows outline through it.
        fill(img, minus(dilate(mask, width), mask), outline)
    fill(img, mask, color, opacity)
    if volume:
        add_volume(img, mask, color)


def solid(color: RGB) -> Image.Image:
    return Image.new("RGB", (CANVAS, CANVAS), color)


def radial_background(inner: RGB, outer: RGB, center: Point = (512, 470)) -> Image.Image:
    # Pillow's built-in radial gradient is 256 px wide (0 in the middle, 255 at radius 128); stretching
    # it past the canvas keeps the corners from saturating to the flat outer colour.
    grad = Image.radial_gradient("L").resize((CANVAS * 2, CANVAS * 2), Image.Resampling.BICUBIC)
    left = round(CANVAS - center[0])
    top = round(CANVAS - center[1])
    ramp = grad.crop((left, top, left + CANVAS, top + CANVAS))
    return Image.composite(solid(outer), solid(inner), ramp)


def halo(img: Image.Image, cx: float, cy: float, radius: float, color: RGB, opacity: float = 0.5) -> None:
    """A pale disc behind the creature so it pops off the gradient like a trading-card portrait."""
    fill(img, soft(ellipse_mask(box(cx, cy, radius)), 6), color, opacity)


def ground_shadow(
    img: Image.Image, cx: float, cy: float, rx: float, ry: float, color: RGB, opacity: float = 0.45
) -> None:
    fill(img, soft(ellipse_mask(box(cx, cy, rx, ry)), ry * 0.45), color, opacity)


def sparkle(img: Image.Image, cx: float, cy: float, size: float, color: RGB, opacity: float = 1.0) -> None:
    fill(img, poly_mask(star(cx, cy, size, size * 0.28)), color, opacity)


# --------------------------------------------------------------------------- face parts


def draw_eye(
    img: Image.Image,
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    iris: RGB,
) -> None:
    """A big glossy eye: dark ink, a coloured glow at the bottom and two catch-lights.

    The catch-lights are what make a cartoon eye read as "alive"; both sit on the light-source side
    (top-left) for every creature so the six images share one lighting story.
    """
    eye = ellipse_mask(box(cx, cy, rx, ry))
    fill(img, eye, INK)
    glow = soft(ellipse_mask(box(cx, cy + ry * 0.55, rx * 0.85, ry * 0.6)), rx * 0.18)
    fill(img, intersect(eye, glow), iris, 0.95)
    fill(img, ellipse_mask(box(cx - rx * 0.32, cy - ry * 0.36, rx * 0.36, ry * 0.32)), WHITE)
    fill(img, ellipse_mask(box(cx + rx * 0.36, cy + ry * 0.34, rx * 0.15)), WHITE, 0.9)


def draw_blush(img: Image.Image, cx: float, cy: float, rx: float, color: RGB = BLUSH) -> None:
    fill(img, soft(ellipse_mask(box(cx, cy, rx, rx * 0.55)), rx * 0.25), color, 0.6)


def draw_cat_mouth(img: Image.Image, cx: float, cy: float, w: float, color: RGB = INK) -> None:
    """The little 'ω' mouth: two touching arcs, which reads as a content smile at any size."""
    draw = ImageDraw.Draw(img)
    stroke = max(6, round(w * 0.2))
    draw.arc(box(cx - w / 2, cy, w / 2, w * 0.45), 20, 160, fill=color, width=stroke)
    draw.arc(box(cx + w / 2, cy, w / 2, w * 0.45), 20, 160, fill=color, width=stroke)


def draw_open_mouth(img: Image.Image, cx: float, cy: float, w: float, tongue: RGB = TONGUE) -> None:
    """A small open 'D' smile with a tongue, for the more excitable creatures."""
    mouth = intersect(ellipse_mask(box(cx, cy, w, w * 0.9)), below(cy))
    fill(img, dilate(mouth, 6), INK)
    fill(img, mouth, rgb("#7a2740"))
    fill(img, intersect(mouth, ellipse_mask(box(cx, cy + w * 0.85, w * 0.62, w * 0.45))), tongue)


def draw_face(
    img: Image.Image,
    cx: float,
    cy: float,
    spacing: float,
    eye_rx: float,
    iris: RGB,
    mouth: str = "cat",
    blush: RGB = BLUSH,
) -> None:
    """Eyes, cheeks and mouth laid out on one centre line so every face stays symmetric."""
    eye_ry = eye_rx * 1.18
    for side in (-1, 1):
        draw_eye(img, cx + side * spacing, cy, eye_rx, eye_ry, iris)
        draw_blush(img, cx + side * (spacing + eye_rx * 0.55), cy + eye_ry * 1.25, eye_rx * 0.95, blush)
    if mouth == "open":
        draw_open_mouth(img, cx, cy + eye_ry * 0.9, eye_rx * 0.5)
    else:
        draw_cat_mouth(img, cx, cy + eye_ry * 0.9, eye_rx * 0.72)


def finish(img: Image.Image) -> Image.Image:
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


# --------------------------------------------------------------------------- creatures


def draw_droplet() -> Image.Image:
    """Drizzlet: a water-drop body with fan fins, a curled tip and a frothy belly."""
    body_c, line_c = rgb("#5cc6f2"), rgb("#235a8c")
    fin_c, belly_c = rgb("#9be7f5"), rgb("#dff8ff")
    img = radial_background(rgb("#effbff"), rgb("#8fd0ec"))
    halo(img, 512, 520, 380, WHITE, 0.35)
    for bx, by, br in ((170, 300, 26), (214, 236, 14), (842, 360, 32), (800, 270, 16), (880, 560, 12)):
        fill(img, dilate(ellipse_mask(box(bx, by, br)), 5), WHITE, 0.9)
        fill(img, ellipse_mask(box(bx, by, br)), rgb("#c2ecfa"))
        fill(img, ellipse_mask(box(bx - br * 0.35, by - br * 0.35, br * 0.28)), WHITE)
    ground_shadow(img, 512, 880, 250, 40, rgb("#3d7fae"))

    for side in (-1, 1):
        fin = leaf((512 + side * 200, 640), (512 + side * 370, 520), 70, bend=side * 30)
        paint(img, poly_mask(fin), fin_c, line_c)
        rib = [(512 + side * 230, 625), (512 + side * 330, 545)]
        ImageDraw.Draw(img).line(rib, fill=darker(fin_c, 0.2), width=7)
    for side in (-1, 1):
        paint(img, ellipse_mask(box(512 + side * 110, 850, 70, 42)), body_c, line_c)

    body = poly_mask(teardrop((512, 610), 255, (560, 150), curl=-70))
    paint(img, body, body_c, line_c)
    # A wave-crested belly ties the creature to water without needing any text or symbol.
    crest = [(512 + x, 690 + 16 * math.sin(x / 26)) for x in range(-260, 261, 4)]
    wave = poly_mask([*crest, (772, CANVAS), (252, CANVAS)])
    belly = intersect(body, intersect(wave, ellipse_mask(box(512, 740, 200, 160))))
    fill(img, belly, belly_c)
    fill(img, intersect(body, minus(dilate(belly, 8), belly)), lighter(body_c, 0.45), 0.9)

    draw_face(img, 512, 560, 105, 50, rgb("#4fd1ff"), mouth="open")
    return finish(img)


def draw_sprout() -> Image.Image:
    """Leafkin: a gumdrop sprout with big leaf ears, a curly seedling on top and a tiny flower."""
    body_c, line_c = rgb("#a6e07d"), rgb("#2f6b3a")
    ear_c, belly_c = rgb("#5dbb63"), rgb("#f6f8d6")
    img = radial_background(rgb("#fffbe6"), rgb("#bfe3a1"))
    halo(img, 512, 520, 370, rgb("#fffdf0"), 0.5)
    for lx, ly, ang in ((170, 250, 0.5), (860, 300, -0.7), (150, 700, 2.2), (880, 690, -2.0)):
        tip = (lx + 40 * math.cos(ang), ly - 40 * math.sin(ang))
        back = (lx - 40 * math.cos(ang), ly + 40 * math.sin(ang))
        fill(img, poly_mask(leaf(back, tip, 20)), rgb("#8fd07a"), 0.8)
    ground_shadow(img, 512, 875, 240, 38, rgb("#5f9c4c"))

    stem = [(512 + 18 * math.sin(t / 9), 330 - t * 1.5) for t in range(0, 80)]
    ImageDraw.Draw(img).line(stem, fill=line_c, width=26, joint="curve")
    ImageDraw.Draw(img).line(stem, fill=ear_c, width=12, joint="curve")
    for side in (-1, 1):
        sprout_leaf = leaf((512 + side * 6, 240), (512 + side * 110, 190), 34, bend=side * -8)
        paint(img, poly_mask(sprout_leaf), rgb("#7fd36b"), line_c)
    for side in (-1, 1):
        ear = leaf((512 + side * 150, 440), (512 + side * 390, 330), 80, bend=side * 25)
        paint(img, poly_mask(ear), ear_c, line_c)
        ImageDraw.Draw(img).line(
            quad((512 + side * 170, 435), (512 + side * 280, 410), (512 + side * 360, 345), 16),
            fill=lighter(ear_c, 0.35),
            width=8,
        )
    for side in (-1, 1):
        paint(img, ellipse_mask(box(512 + side * 120, 855, 72, 40)), body_c, line_c)

    body = union(ellipse_mask(box(512, 650, 255, 225)), ellipse_mask(box(512, 500, 190, 180)))
    paint(img, body, body_c, line_c)
    fill(img, intersect(body, ellipse_mask(box(512, 770, 165, 120))), belly_c)

    # The flower sits where the left ear meets the head, so it reads as worn, not stuck on the face.
    for i in range(5):
        a = 2 * math.pi * i / 5 - math.pi / 2
        paint(
            img,
            ellipse_mask(box(360 + 28 * math.cos(a), 400 + 28 * math.sin(a), 22)),
            rgb("#ffb3c7"),
            rgb("#b04a6a"),
            volume=False,
            width=6,
        )
    fill(img, ellipse_mask(box(360, 400, 15)), rgb("#ffd85a"))

    draw_face(img, 512, 590, 100, 46, rgb("#8be36b"), mouth="cat")
    return finish(img)


def draw_fire_fox() -> Image.Image:
    """Emberkit: a chubby sitting fox whose tail is a three-tone flame and whose brow has a spark."""
    body_c, line_c = rgb("#f07258"), rgb("#7a2b2e")
    cream = rgb("#fff0dc")
    cx = 470  # Shifted left so the fox and its tall tail sit balanced in the frame together.
    img = radial_background(rgb("#fff4e6"), rgb("#ffbe9a"))
    halo(img, 512, 520, 375, rgb("#fff8ef"), 0.45)
    for ex, ey, es in ((150, 270, 16), (200, 200, 9), (880, 190, 12), (160, 620, 10), (900, 700, 9)):
        sparkle(img, ex, ey, es * 1.6, rgb("#ffb85c"))
    ground_shadow(img, 530, 880, 300, 40, rgb("#c9714f"))

    # The tail goes first so the body overlaps its root; each flame layer is a union of teardrop licks.
    outer = union(
        poly_mask(teardrop((700, 720), 125, (770, 230), curl=-70)),
        poly_mask(teardrop((750, 700), 100, (900, 380), curl=-50)),
        poly_mask(teardrop((760, 760), 80, (930, 600), curl=-30)),
    )
    paint(img, outer, rgb("#ff6b3d"), line_c, volume=False)
    middle = union(
        poly_mask(teardrop((705, 730), 90, (760, 350), curl=-50)),
        poly_mask(teardrop((745, 720), 70, (850, 460), curl=-35)),
    )
    fill(img, middle, rgb("#ff9f3a"))
    fill(img, poly_mask(teardrop((710, 745), 55, (745, 500), curl=-25)), rgb("#ffdd6e"))

    for side in (-1, 1):
        paint(img, ellipse_mask(box(cx + side * 95, 860, 62, 38)), body_c, line_c)
    body = ellipse_mask(box(cx, 720, 175, 150))
    paint(img, body, body_c, line_c)
    fill(img, intersect(body, ellipse_mask(box(cx, 760, 100, 120))), cream)

    for side in (-1, 1):
        ear = [(cx + side * 75, 330), (cx + side * 255, 150), (cx + side * 225, 380)]
        ear_rounded = poly_mask(teardrop((cx + side * 180, 330), 70, (cx + side * 250, 150), curl=side * 10))
        paint(img, union(poly_mask(ear), ear_rounded), body_c, line_c)
        inner = teardrop((cx + side * 180, 330), 42, (cx + side * 238, 195), curl=side * 6)
        fill(img, poly_mask(inner), rgb("#ffc1a8"))
    for side in (-1, 1):
        # Cheek fluff: a zig-zag fringe so the head reads as furry rather than as a plain ball.
        tufts = [
            (cx + side * 150, 420),
            (cx + side * 262, 470),
            (cx + side * 232, 500),
            (cx + side * 280, 540),
            (cx + side * 225, 565),
            (cx + side * 250, 610),
            (cx + side * 150, 620),
        ]
        paint(img, poly_mask(tufts), body_c, line_c, volume=False)
    head = ellipse_mask(box(cx, 480, 225, 185))
    paint(img, head, body_c, line_c)
    muzzle = intersect(head, union(ellipse_mask(box(cx, 600, 150, 90)), ellipse_mask(box(cx, 560, 90, 70))))
    fill(img, muzzle, cream)
    fill(img, poly_mask(teardrop((cx, 368), 22, (cx + 6, 306), curl=-8)), rgb("#ffd35c"))

    draw_face(img, cx, 480, 105, 46, rgb("#ffb347"), mouth="cat", blush=rgb("#ff9aa0"))
    fill(img, ellipse_mask(box(cx, 538, 16, 11)), INK)
    return finish(img)


def draw_puffbat() -> Image.Image:
    """Zapuff: a fluffy lilac puffball with bat wings, a lightning tuft and a tiny fang."""
    body_c, line_c = rgb("#d9ccff"), rgb("#4b3a8f")
    wing_c = rgb("#7a64d8")
    img = radial_background(rgb("#f3f0ff"), rgb("#a9a4ea"))
    halo(img, 512, 510, 370, WHITE, 0.35)
    for zx, zy, turn in ((160, 300, 0.3), (870, 260, -0.3), (880, 640, 0.2), (150, 640, -0.2)):
        bolt = [
            (zx - 18, zy - 40),
            (zx + 14, zy - 40),
            (zx + 2, zy - 6),
            (zx + 22, zy - 6),
            (zx - 16, zy + 44),
            (zx - 6, zy + 8),
            (zx - 26, zy + 8),
        ]
        fill(img, poly_mask(rotate(bolt, (zx, zy), turn)), rgb("#ffe066"))
    ground_shadow(img, 512, 885, 200, 32, rgb("#6c64b8"))

    for side in (-1, 1):
        # Bat wing: a swept top edge and three scallops along the bottom, made by subtracting circles.
        tip = (512 + side * 440, 330)
        top = cubic((512 + side * 150, 470), (512 + side * 260, 300), (512 + side * 380, 280), tip)
        wing = poly_mask([*top, tip, (512 + side * 420, 560), (512 + side * 160, 600)])
        for i, (sx, sy, sr) in enumerate(((300, 590, 62), (382, 555, 48), (434, 490, 36))):
            wing = minus(wing, ellipse_mask(box(512 + side * sx, sy + i * 4, sr)))
        paint(img, wing, wing_c, line_c)
        for fx, fy in ((280, 520), (370, 490)):
            ImageDraw.Draw(img).line(
                [(512 + side * 180, 470), (512 + side * fx, fy)], fill=darker(wing_c, 0.25), width=7
            )

    bolt_tuft = [(470, 300), (560, 120), (610, 120), (560, 215), (625, 215), (505, 330)]
    paint(img, poly_mask(bolt_tuft), rgb("#ffd84a"), rgb("#9a6b10"))
    for side in (-1, 1):
        paint(img, ellipse_mask(box(512 + side * 80, 850, 50, 32)), body_c, line_c)
    body = poly_mask(scallop(512, 560, 270, 14, 22, turn=0.1))
    paint(img, body, body_c, line_c)
    fill(img, intersect(body, ellipse_mask(box(512, 700, 150, 110))), rgb("#f4efff"))

    draw_face(img, 512, 540, 110, 52, rgb("#ffe066"), mouth="cat")
    fang = [(538, 614), (560, 614), (549, 636)]
    fill(img, dilate(poly_mask(fang), 4), INK)
    fill(img, poly_mask(fang), WHITE)
    return finish(img)


def draw_pebble_turtle() -> Image.Image:
    """Pebbleshell: a round-faced turtle wearing a dome of stone plates with crystals sprouting on top."""
    shell_c, line_c = rgb("#b8a58c"), rgb("#4a3b32")
    skin_c, crystal_c = rgb("#f4dcb8"), rgb("#7fe0d3")
    img = radial_background(rgb("#fff8ec"), rgb("#d9c2a0"))
    halo(img, 512, 520, 380, rgb("#fffaf1"), 0.45)
    for px, py, pr in ((120, 800, 22), (165, 835, 13), (905, 805, 18), (870, 845, 11)):
        paint(img, ellipse_mask(box(px, py, pr * 1.3, pr)), rgb("#c9b497"), line_c, volume=False, width=5)
    ground_shadow(img, 512, 880, 320, 42, rgb("#8c7358"))

    for side in (-1, 1):
        paint(img, ellipse_mask(box(512 + side * 230, 820, 75, 60)), skin_c, line_c)

    crystals = ((430, 330, 36, 130, -0.35), (520, 290, 44, 170, 0.0), (612, 335, 32, 110, 0.4))
    for cx, cy, half_w, height, tilt in crystals:
        shard = [
            (cx - half_w, cy),
            (cx - half_w, cy - height * 0.7),
            (cx, cy - height),
            (cx + half_w, cy - height * 0.7),
            (cx + half_w, cy),
        ]
        pts = rotate(shard, (cx, cy), tilt)
        paint(img, poly_mask(pts), crystal_c, rgb("#21675f"), volume=False)
        # A pale left facet is all it takes for the shard to read as a cut gem rather than a flat tag.
        facet = [pts[1], pts[2], midpoint(pts[2], pts[3]), midpoint(pts[0], pts[4])]
        fill(img, poly_mask(facet), lighter(crystal_c, 0.5), 0.8)

    shell = intersect(ellipse_mask(box(512, 640, 340, 300)), above(760))
    shell = union(shell, ellipse_mask(box(512, 740, 340, 50)))
    paint(img, shell, shell_c, line_c)
    # Plates: a few rounded tiles in slightly varied stone tones so the dome reads as built from pebbles.
    plates = (
        (512, 470, 95, 75),
        (360, 560, 85, 70),
        (664, 560, 85, 70),
        (512, 640, 90, 60),
        (260, 690, 60, 45),
        (764, 690, 60, 45),
    )
    for i, (px, py, prx, pry) in enumerate(plates):
        tone = (rgb("#cbb89e"), rgb("#a99378"), rgb("#bfae96"))[i % 3]
        plate = intersect(shell, ellipse_mask(box(px, py, prx, pry)))
        fill(img, dilate(plate, 6), darker(shell_c, 0.35))
        fill(img, plate, tone)
        fill(
            img,
            intersect(plate, ellipse_mask(box(px - prx * 0.3, py - pry * 0.35, prx * 0.35, pry * 0.25))),
            WHITE,
            0.3,
        )
    rim = intersect(shell, ellipse_mask(box(512, 750, 345, 48)))
    fill(img, rim, darker(shell_c, 0.15))
    clumps = ((640, 405, 26), (672, 392, 30), (706, 410, 24))
    moss = union(*(ellipse_mask(box(mx, my, mr)) for mx, my, mr in clumps))
    paint(img, intersect(shell, moss), rgb("#8cc46a"), rgb("#3f6b2e"), volume=False, width=6)

    head = ellipse_mask(box(512, 720, 185, 150))
    paint(img, head, skin_c, line_c)
    draw_face(img, 512, 705, 88, 44, rgb("#56c9ba"), mouth="open")
    return finish(img)


def draw_jelly() -> Image.Image:
    """Nebulight: a glowing star-filled jellyfish drifting in a night sky on ribbon tentacles."""
    bell_c, line_c = rgb("#a98bff"), rgb("#3d2a86")
    img = radial_background(rgb("#4a3d8f"), rgb("#171638"), center=(512, 450))
    # Seeded so the star field is identical on every run; this is art, not security.
    rng = random.Random(20240531)
    for _ in range(70):
        x, y = rng.uniform(20, 1004), rng.uniform(20, 1004)
        r = rng.choice((2.5, 3.5, 4.5, 6.0))
        fill(img, ellipse_mask(box(x, y, r)), rgb("#fff6d8"), rng.uniform(0.4, 0.95))
    for sx, sy, ss in ((180, 220, 30), (850, 180, 24), (880, 640, 20), (140, 600, 18)):
        sparkle(img, sx, sy, ss, rgb("#fff3b0"))
    ground_shadow(img, 512, 935, 170, 24, rgb("#0c0b22"), 0.6)

    fill(img, soft(ellipse_mask(box(512, 430, 340, 300)), 70), rgb("#c6a8ff"), 0.4)

    tentacle_colors = (rgb("#ff9bd2"), rgb("#9fd8ff"), rgb("#ffc1e6"), rgb("#9fd8ff"), rgb("#ff9bd2"))
    # Fading the ribbons toward their tips sells the "drifting" feeling; one ramp serves all five.
    fade = blank()
    ramp = Image.linear_gradient("L").resize((CANVAS, 320))
    fade.paste(ramp.point(lambda v: 255 - round(v * 0.8)), (0, 560))
    for i, tx in enumerate((330, 420, 512, 604, 694)):
        left: list[Point] = []
        right: list[Point] = []
        for step in range(61):
            t = step / 60
            y = 560 + t * 320
            x = tx + 30 * math.sin(i * 1.3 + t * 7) * t + (tx - 512) * 0.3 * t
            half = 22 * (1 - t) + 5
            left.append((x - half, y))
            right.append((x + half, y))
        ribbon = poly_mask(left + right[::-1])
        fill(img, intersect(minus(dilate(ribbon, 7), ribbon), fade), darker(tentacle_colors[i], 0.6))
        fill(img, intersect(ribbon, fade), tentacle_colors[i])

    dome = intersect(ellipse_mask(box(512, 510, 300, 300)), above(550))
    frill = union(*(ellipse_mask(box(512 + dx, 550, 44)) for dx in range(-258, 259, 86)))
    bell = union(dome, intersect(frill, ellipse_mask(box(512, 520, 305, 120))))
    # Slightly translucent so the night sky glimmers through, like a real jellyfish bell.
    paint(img, bell, bell_c, line_c, opacity=0.9)
    glow = blank()
    glow.paste(Image.linear_gradient("L").resize((CANVAS, 420)).point(lambda v: 255 - v), (0, 200))
    fill(img, intersect(bell, glow), rgb("#e7dcff"), 0.45)
    for sx, sy, ss in ((370, 330, 14), (650, 300, 18), (560, 250, 9), (720, 420, 10), (300, 450, 9)):
        sparkle(img, sx, sy, ss, WHITE, 0.9)
    for dx, dy in ((450, 280), (610, 360), (400, 390), (690, 330)):
        fill(img, ellipse_mask(box(dx, dy, 5)), WHITE, 0.8)

    draw_face(img, 512, 440, 100, 46, rgb("#ff9bd2"), mouth="cat")
    return finish(img)


CREATURES: tuple[tuple[str, Callable[[], Image.Image]], ...] = (
    ("image_00.png", draw_droplet),
    ("image_01.png", draw_sprout),
    ("image_02.png", draw_fire_fox),
    ("image_03.png", draw_puffbat),
    ("image_04.png", draw_pebble_turtle),
    ("image_05.png", draw_jelly),
)


def draw_all() -> dict[str, Image.Image]:
    """Render every creature; keys are the file names they are shipped under."""
    return {name: draw() for name, draw in CREATURES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, image in draw_all().items():
        path = out / name
        image.save(path, format="PNG", optimize=True)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
