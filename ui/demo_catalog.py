"""A demo shop the project renders itself: clothes, shoes, bags and hats on a white studio
background, with names, prices and metadata.

Each photo is painted with OpenCV and numpy from a seeded generator: product silhouettes drawn at
twice the size and averaged down (soft edges), a fabric print (stripes, checks, dots, florals made
of small petals), shading for volume (lit from above, darker towards the edges), a few soft folds,
seams, collars, cuffs, buttons and a contact shadow. Deterministic, so every machine builds the
same catalogue, and free of any third-party photos or fonts. ``python -m ui.demo_catalog OUT``
writes it without starting the UI.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

W, H = 300, 400  # 3:4 portrait, like catalogue photos
S = 2  # supersampling of the silhouettes
YY, XX = np.mgrid[:H, :W].astype(np.float32)
LIGHT = 1.05 - 0.12 * YY / H - 0.05 * XX / W  # lit from the top left
COLOURS = {
    "Black": (44, 44, 48), "White": (238, 238, 232), "Grey": (135, 135, 138),
    "Navy Blue": (32, 44, 100), "Blue": (50, 100, 190), "Red": (190, 35, 45),
    "Pink": (232, 140, 170), "Green": (50, 120, 70), "Yellow": (236, 196, 60),
    "Brown": (120, 78, 45), "Beige": (214, 194, 160), "Purple": (105, 55, 140),
}
PATTERNS = ("Solid", "Striped", "Dotted", "Checked", "Floral")
# type -> (genders, patterns it comes in, base price, (materials), (nouns))
TYPES = {
    "Tshirt": (("Men", "Women", "Unisex"), PATTERNS, 14, ("cotton", "jersey", "organic cotton"),
               ("T-shirt",)),
    "Shirt": (("Men", "Women"), PATTERNS, 29, ("cotton", "linen", "poplin", "oxford"),
              ("shirt",)),
    "Hoodie": (("Men", "Women", "Unisex"), ("Solid", "Striped", "Checked"), 39,
               ("fleece", "cotton", "brushed"), ("hoodie",)),
    "Dress": (("Women",), PATTERNS, 39, ("jersey", "satin", "linen", "crepe"),
              ("midi dress", "sun dress", "skater dress")),
    "Trousers": (("Men", "Women"), ("Solid", "Striped", "Checked"), 34,
                 ("chino", "wool", "linen", "twill"), ("trousers",)),
    "Skirt": (("Women",), PATTERNS, 24, ("pleated", "A-line", "cotton", "satin"), ("skirt",)),
    "Shoe": (("Men", "Women", "Unisex"), ("Solid", "Striped", "Checked"), 49,
             ("canvas", "leather", "suede"), ("sneakers", "trainers")),
    "Handbag": (("Women",), ("Solid", "Striped", "Checked", "Dotted"), 44,
                ("leather", "faux leather", "canvas"), ("handbag", "tote bag")),
    "Hat": (("Men", "Women", "Unisex"), ("Solid", "Striped", "Checked"), 19,
            ("cotton", "straw", "wool"), ("cap", "sun hat")),
}
PRINT_WORD = {"Solid": "", "Striped": "striped", "Dotted": "polka-dot", "Checked": "checked",
              "Floral": "floral"}


class Painter:
    """One photo: silhouettes are drawn in unit coordinates (x, y in 0..1 of the frame), placed
    with a small random scale and offset, and composited with shading onto the canvas."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.scale = rng.uniform(0.92, 1.02)
        self.dx, self.dy = rng.uniform(-.025, .025), rng.uniform(-.02, .02)
        yy = np.linspace(0, 1, H, dtype=np.float32)[:, None]
        studio = 255 - 6 * yy ** 2  # a faint sweep, white at the top
        self.canvas = np.repeat(np.repeat(studio, W, 1)[..., None], 3, 2).astype(np.float32)
        self.total = np.zeros((H, W), np.float32)  # everything drawn (for the shadow)
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []

    def pt(self, x: float, y: float, k: int = 1) -> tuple[int, int]:
        return (int(round(((x - .5) * self.scale + .5 + self.dx) * W * k)),
                int(round(((y - .5) * self.scale + .5 + self.dy) * H * k)))

    def pts(self, poly, k: int = 1) -> np.ndarray:
        return np.array([self.pt(x, y, k) for x, y in poly], np.int32)

    def mask(self, polys=(), ellipses=(), cut=()) -> np.ndarray:
        """Soft 0..1 mask: polygons and (cx, cy, ax, ay, angle, start, end) ellipses in unit
        coordinates, minus ``cut`` ellipses."""
        m = np.zeros((H * S, W * S), np.uint8)
        for poly in polys:
            cv2.fillPoly(m, [self.pts(poly, S)], 255, cv2.LINE_AA)
        for shape, value in [(e, 255) for e in ellipses] + [(e, 0) for e in cut]:
            cx, cy, ax, ay, ang, a0, a1 = shape
            cv2.ellipse(m, self.pt(cx, cy, S), (int(ax * W * S * self.scale),
                                                int(ay * H * S * self.scale)),
                        ang, a0, a1, value, -1, cv2.LINE_AA)
        return cv2.resize(m, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32) / 255

    def paint(self, alpha: np.ndarray, texture: np.ndarray, volume: float = 0.22,
              gloss: float = 0.0) -> None:
        """Composite ``texture`` under ``alpha`` with volume shading: lit from the top left,
        darker towards the part's edges (a distance transform), and an optional sheen."""
        x, y, w, h = cv2.boundingRect((alpha > 0.01).astype(np.uint8))
        if w == 0:
            return
        win = (slice(y, y + h), slice(x, x + w))  # work on the part's box only
        al = alpha[win]
        d = cv2.distanceTransform(np.pad((al > 0.5).astype(np.uint8), 1), cv2.DIST_L2, 5)
        depth = np.clip(d[1:-1, 1:-1] / (0.07 * W), 0, 1) ** 0.6
        out = texture[win] * ((1 - volume + volume * depth) * LIGHT[win])[..., None]
        if gloss:
            sheen = cv2.GaussianBlur((depth > 0.8).astype(np.float32) * (1 - YY[win] / H),
                                     (0, 0), 9)
            out = out + gloss * 255 * 0.35 * sheen[..., None]
        a = al[..., None]
        self.canvas[win] = self.canvas[win] * (1 - a) + np.clip(out, 0, 255) * a
        self.total[win] = np.maximum(self.total[win], al)

    def lines(self, paths, strength: float = 0.25, width: int = 3, blur: float = 2.5,
              within: np.ndarray | None = None, light: bool = False) -> None:
        """Soft darker (or lighter) lines: folds, seams, creases. Paths in unit coordinates;
        three points make a gentle curve."""
        layer = np.zeros((H, W), np.float32)
        for path in paths:
            p = np.array(path, np.float32)
            if len(p) == 3:  # quadratic Bezier
                t = np.linspace(0, 1, 16)[:, None]
                p = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t ** 2 * p[2]
            cv2.polylines(layer, [self.pts(p)], False, 1.0, width, cv2.LINE_AA)
        if blur:
            layer = cv2.GaussianBlur(layer, (0, 0), blur)
        if within is not None:
            layer *= within
        if light:
            self.canvas += (255 - self.canvas) * (strength * layer)[..., None]
        else:
            self.canvas *= (1 - strength * layer)[..., None]

    def dots(self, centres, radius: float, colour, rim: float = 0.6) -> None:
        for x, y in centres:
            c = self.pt(x, y)
            r = max(2, int(radius * W * self.scale))
            cv2.circle(self.canvas, c, r, tuple(float(v) * rim for v in colour), -1,
                       cv2.LINE_AA)
            cv2.circle(self.canvas, c, r - 1, tuple(float(v) for v in colour), -1, cv2.LINE_AA)
            cv2.circle(self.canvas, (c[0] - r // 3, c[1] - r // 3), max(1, r // 3),
                       tuple(min(255., float(v) + 50) for v in colour), -1, cv2.LINE_AA)

    def shadow(self) -> None:
        """A soft contact shadow under everything drawn, added beneath it."""
        m = self.total
        sh = cv2.GaussianBlur(np.roll(m, (6, 4), (0, 1)), (0, 0), 7) * (1 - m)
        self.canvas *= (1 - 0.18 * sh)[..., None]

    def finish(self) -> np.ndarray:
        self.shadow()
        grain = self.rng.normal(0, 1.6, (H, W, 1)).astype(np.float32) * self.total[..., None]
        return np.clip(self.canvas + grain, 0, 255).astype(np.uint8)


def fabric(pattern: str, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A full-frame print of ``pattern`` on ``colour`` (RGB float)."""
    img = np.ones((H, W, 3), np.float32) * colour
    light = colour.mean() > 150
    accent = np.clip(colour * 0.35 + (40 if light else 235) * 0.65, 0, 255)
    if rng.random() < 0.4:  # a coloured second colour now and then
        accent = np.array(list(COLOURS.values())[int(rng.integers(len(COLOURS)))], np.float32)
        if np.abs(accent - colour).sum() < 120:
            accent = 255 - colour * 0.6
    yy, xx = YY, XX
    if pattern == "Striped":
        period = float(rng.integers(12, 26))
        width = rng.uniform(0.25, 0.5)
        axis = yy if rng.random() < 0.6 else xx
        frac = (axis / period) % 1
        a = np.clip((width - np.abs(frac - 0.5) * 2 + 0.5 * width) * 4, 0, 1)
        img = img * (1 - a[..., None]) + accent * a[..., None]
    elif pattern == "Checked":
        period = float(rng.integers(16, 30))
        band = lambda v: np.clip(1.5 - 6 * np.abs((v / period) % 1 - 0.5), 0, 1)  # noqa: E731
        a = np.clip(0.55 * band(xx) + 0.55 * band(yy), 0, 1)
        thin = (np.abs((xx / period + 0.5) % 1 - 0.5) < 0.04) | (
            np.abs((yy / period + 0.5) % 1 - 0.5) < 0.04)
        img = img * (1 - a[..., None]) + accent * a[..., None]
        img[thin] = img[thin] * 0.6 + accent * 0.4 * 0.7
    elif pattern == "Dotted":
        period = int(rng.integers(14, 24))
        r = max(2, int(period * rng.uniform(0.15, 0.25)))
        for j, y in enumerate(range(0, H + period, period)):
            for x in range(-period, W + period, period):
                cv2.circle(img, (x + (period // 2) * (j % 2), y), r,
                           tuple(float(v) for v in accent), -1, cv2.LINE_AA)
    elif pattern == "Floral":
        petal = accent if not light else np.array([200, 60, 90], np.float32)
        leaf = np.array([60, 130, 70], np.float32) if colour[1] < 110 or colour[0] > 150 \
            else np.array([240, 240, 235], np.float32)
        centre = (240.0, 200.0, 70.0)
        step = int(rng.integers(26, 40))
        for y in range(-step, H + step, step):
            for x in range(-step, W + step, step):
                cx = x + int(rng.integers(-step // 3, step // 3 + 1))
                cy = y + int(rng.integers(-step // 3, step // 3 + 1))
                size = rng.uniform(0.16, 0.24) * step
                turn = rng.uniform(0, 72)
                cv2.ellipse(img, (cx + int(size * 1.2), cy + int(size * 1.1)),
                            (int(size * 0.7), int(size * 0.3)), turn + 30, 0, 360,
                            tuple(float(v) for v in leaf), -1, cv2.LINE_AA)
                for k in range(5):
                    ang = np.deg2rad(turn + 72 * k)
                    px, py = cx + size * 0.6 * np.cos(ang), cy + size * 0.6 * np.sin(ang)
                    cv2.ellipse(img, (int(px), int(py)), (int(size * 0.6), int(size * 0.38)),
                                float(np.rad2deg(ang)), 0, 360,
                                tuple(float(v) for v in petal), -1, cv2.LINE_AA)
                cv2.circle(img, (cx, cy), max(2, int(size * 0.3)), centre, -1, cv2.LINE_AA)
    return img


def _dark(colour: np.ndarray, f: float = 0.7) -> np.ndarray:
    return np.ones((H, W, 3), np.float32) * colour * f


def draw_tshirt(p: Painter, tex, colour, rng) -> None:
    body = [(.36, .17), (.44, .15), (.56, .15), (.64, .17), (.86, .30), (.79, .41), (.70, .36),
            (.71, .86), (.29, .86), (.30, .36), (.21, .41), (.14, .30)]
    neck = (.5, .15, .07, .05, 0, 0, 180)  # the front scoop
    m = p.mask([body], cut=[neck])
    p.paint(m, tex, 0.22)
    inner = p.mask(ellipses=[neck], cut=[(.5, .135, .07, .035, 0, 0, 180)])
    p.paint(inner, _dark(colour, 0.55), 0.1)  # the inside of the back, through the neck
    rib = p.mask(ellipses=[(.5, .15, .082, .062, 0, 0, 180)], cut=[neck])
    p.paint(rib, _dark(colour, 0.88), 0.05)
    p.lines([[(.17, .29), (.235, .395)], [(.83, .29), (.765, .395)],
             [(.29, .83), (.5, .834), (.71, .83)]], 0.22, 1, 0.6, m)  # hems
    s = rng.uniform(-.03, .03)
    p.lines([[(.36, .45), (.40 + s, .60), (.38, .80)], [(.62, .50), (.60 - s, .65), (.64, .82)],
             [(.31, .37), (.35, .40), (.37, .44)]], 0.18, 4, 4, m)


def draw_shirt(p: Painter, tex, colour, rng) -> None:
    body = [(.37, .15), (.63, .15), (.73, .19), (.84, .47), (.87, .80), (.78, .81), (.71, .45),
            (.71, .87), (.29, .87), (.29, .45), (.22, .81), (.13, .80), (.16, .47), (.27, .19)]
    m = p.mask([body])
    p.paint(m, tex, 0.22)
    cuffs = p.mask([[(.78, .74), (.865, .73), (.87, .80), (.78, .81)],
                    [(.13, .73), (.215, .74), (.22, .81), (.13, .80)]])
    p.paint(cuffs, tex * 0.92, 0.1)
    collar = [[(.5, .22), (.38, .13), (.44, .11), (.5, .14)], [(.5, .22), (.62, .13), (.56, .11),
                                                               (.5, .14)]]
    cm = p.mask(collar)
    p.paint(cm, tex * 1.02, 0.12)
    p.lines([[(.38, .13), (.5, .22), (.62, .13)], [(.5, .22), (.5, .87)],
             [(.29, .45), (.27, .19)], [(.71, .45), (.73, .19)]], 0.35, 1, 0.7, m)
    p.lines([[(.515, .22), (.515, .87)]], 0.15, 1, 0.5, m, light=True)
    p.dots([(.5, y) for y in (.28, .40, .52, .64, .76)], 0.011,
           np.array((240, 238, 230)) if colour.mean() < 150 else np.array((60, 55, 50)))
    p.lines([[(.35, .42), (.40, .62), (.37, .84)], [(.64, .48), (.61, .66), (.65, .84)],
             [(.19, .55), (.20, .65), (.17, .76)], [(.81, .55), (.80, .66), (.83, .76)]],
            0.17, 4, 4, m)


def draw_hoodie(p: Painter, tex, colour, rng) -> None:
    hood = p.mask(ellipses=[(.5, .17, .13, .09, 0, 0, 360)])
    p.paint(hood, tex, 0.3)
    p.paint(p.mask(ellipses=[(.5, .19, .075, .06, 0, 0, 360)]), _dark(colour, 0.45), 0.1)
    body = [(.35, .18), (.65, .18), (.75, .22), (.86, .50), (.88, .80), (.78, .81), (.72, .50),
            (.72, .86), (.28, .86), (.28, .50), (.22, .81), (.12, .80), (.14, .50), (.25, .22)]
    m = p.mask([body], cut=[(.5, .19, .075, .06, 0, 0, 360)])
    p.paint(m, tex, 0.25)
    bands = p.mask([[(.28, .80), (.72, .80), (.72, .86), (.28, .86)],
                    [(.78, .75), (.88, .74), (.88, .80), (.78, .81)],
                    [(.12, .74), (.22, .75), (.22, .81), (.12, .80)]])
    p.paint(bands, _dark(colour, 0.85), 0.1)
    p.lines([[(.29 + i * .02, .80), (.29 + i * .02, .86)] for i in range(22)]
            + [[(.125 + i * .02, .745), (.125 + i * .02, .80)] for i in range(5)]
            + [[(.785 + i * .02, .745), (.785 + i * .02, .80)] for i in range(5)], 0.12, 1, 0.4)
    pocket = [(.36, .80), (.39, .62), (.61, .62), (.64, .80)]
    p.lines([pocket, [(.39, .62), (.36, .74)], [(.61, .62), (.64, .74)]], 0.4, 1, 0.8, m)
    for x in (.47, .53):  # drawstrings
        cv2.line(p.canvas, p.pt(x, .25), p.pt(x + (.003 if x > .5 else -.003), .40),
                 (235, 235, 230) if colour.mean() < 150 else (70, 70, 70), 2, cv2.LINE_AA)
    p.lines([[(.34, .30), (.38, .45), (.35, .60)], [(.66, .32), (.63, .48), (.66, .60)],
             [(.18, .55), (.19, .65), (.16, .72)], [(.82, .55), (.81, .65), (.84, .72)]],
            0.2, 5, 5, m)


def draw_dress(p: Painter, tex, colour, rng) -> None:
    flare = rng.uniform(0.0, 0.06)
    body = [(.40, .10), (.43, .10), (.46, .16), (.54, .16), (.57, .10), (.60, .10), (.63, .20),
            (.61, .38), (.78 + flare, .90), (.5, .92), (.22 - flare, .90), (.39, .38), (.37, .20)]
    m = p.mask([body])
    p.paint(m, tex, 0.24)
    p.lines([[(.39, .38), (.5, .39), (.61, .38)]], 0.35, 1, 0.7, m)  # waist seam
    p.lines([[(.46, .16), (.5, .22), (.54, .16)]], 0.3, 1, 0.6, m)
    p.lines([[(.22 - flare, .895), (.5, .915), (.78 + flare, .895)]], 0.25, 1, 0.6, m)
    folds = [[(.44 - k * .04, .41), (.42 - k * .08, .65), (.40 - k * .12 - flare, .89)]
             for k in range(3)] + [[(.56 + k * .04, .41), (.58 + k * .08, .65),
                                    (.60 + k * .12 + flare, .89)] for k in range(3)]
    p.lines(folds, 0.2, 5, 5, m)
    p.lines([[(.5, .42), (.5, .65), (.5, .90)]], 0.2, 6, 6, m, light=True)
    if rng.random() < 0.5:  # a belt
        belt = p.mask([[(.39, .365), (.61, .365), (.61, .395), (.39, .395)]])
        p.paint(belt, _dark(colour, 0.5), 0.05)


def draw_trousers(p: Painter, tex, colour, rng) -> None:
    legs = [(.30, .10), (.70, .10), (.73, .92), (.555, .92), (.50, .36), (.445, .92), (.27, .92)]
    m = p.mask([legs])
    p.paint(m, tex, 0.2)
    band = p.mask([[(.30, .10), (.70, .10), (.70, .145), (.30, .145)]])
    p.paint(band, tex * 0.9, 0.05)
    p.lines([[(.30, .145), (.70, .145)], [(.5, .145), (.5, .36)], [(.47, .15), (.47, .28),
                                                                    (.5, .32)],
             [(.31, .16), (.38, .16), (.40, .25)], [(.69, .16), (.62, .16), (.60, .25)]],
            0.35, 1, 0.6, m)
    p.lines([[(.385, .30), (.375, .92)], [(.615, .30), (.625, .92)]], 0.25, 2, 1.5, m,
            light=True)  # pressed creases
    p.lines([[(.45, .36), (.47, .42)], [(.55, .36), (.53, .42)], [(.30, .70), (.34, .72)],
             [(.70, .74), (.66, .76)], [(.29, .85), (.35, .86)], [(.71, .84), (.66, .86)]],
            0.25, 4, 3, m)
    for x in (.345, .48, .655):  # belt loops
        p.lines([[(x, .10), (x, .15)]], 0.4, 2, 0.5, m)
    p.dots([(.5, .125)], 0.010, np.array((190, 170, 120)))


def draw_skirt(p: Painter, tex, colour, rng) -> None:
    flare = rng.uniform(0, .06)
    body = [(.36, .22), (.64, .22), (.78 + flare, .76), (.5, .78), (.22 - flare, .76)]
    m = p.mask([body])
    p.paint(m, tex, 0.22)
    band = p.mask([[(.36, .22), (.64, .22), (.645, .26), (.355, .26)]])
    p.paint(band, tex * 0.88, 0.05)
    n = 7
    pleats = [[(.37 + (.26 * i / n), .26), (.22 - flare + (.56 + 2 * flare) * i / n, .77)]
              for i in range(1, n)]
    p.lines(pleats, 0.22, 2, 2, m)
    p.lines([[(p0[0] + .012, p0[1]), (p1[0] + .02, p1[1])] for p0, p1 in pleats], 0.12, 3, 3,
            m, light=True)
    p.lines([[(.22 - flare, .755), (.5, .775), (.78 + flare, .755)]], 0.25, 1, 0.6, m)


def draw_shoe(p: Painter, tex, colour, rng) -> None:
    upper = [(.10, .66), (.11, .59), (.18, .54), (.32, .51), (.44, .47), (.52, .42), (.56, .38),
             (.61, .37), (.64, .41), (.72, .44), (.80, .40), (.85, .42), (.89, .52), (.90, .66)]
    m = p.mask([upper])
    p.paint(m, tex, 0.25, gloss=0.4)
    p.paint(p.mask(ellipses=[(.72, .425, .08, .02, 8, 0, 360)]) * m, _dark(colour, 0.4), 0.1)
    sole_col = np.array((242, 240, 234), np.float32) if colour.mean() < 200 else \
        np.array((60, 55, 52), np.float32)
    sole = p.mask([[(.09, .65), (.91, .65), (.92, .70), (.89, .73), (.12, .73), (.08, .69)]])
    p.paint(sole, np.ones((H, W, 3), np.float32) * sole_col, 0.1)
    p.lines([[(.09, .685), (.92, .685)]], 0.25, 1, 0.6, sole)
    p.lines([[(.10, .715), (.90, .715)]], 0.2, 1, 0.6, sole)
    toe = p.mask([[(.10, .66), (.11, .59), (.18, .54), (.27, .52), (.27, .66)]]) * m
    p.paint(toe, tex * 0.93, 0.1, gloss=0.3)
    p.lines([[(.27, .52), (.28, .60), (.27, .65)], [(.61, .39), (.66, .52), (.76, .65)],
             [(.36, .50), (.50, .56), (.66, .52)]], 0.35, 1, 0.6, m)  # seams
    lace = np.array((245, 245, 240)) if colour.mean() < 180 else np.array((50, 50, 55))
    for i in range(4):  # laces across the tongue
        a, b = p.pt(.37 + i * .045, .52 - i * .03), p.pt(.42 + i * .045, .485 - i * .03)
        cv2.line(p.canvas, a, b, tuple(float(v) for v in lace), 3, cv2.LINE_AA)
    heel = p.mask([[(.84, .42), (.89, .52), (.90, .65), (.85, .65), (.82, .50)]])
    p.paint(heel, np.ones((H, W, 3), np.float32) * sole_col * 0.95, 0.1)


def draw_handbag(p: Painter, tex, colour, rng) -> None:
    metal = np.array((205, 175, 100), np.float32)
    handle = p.mask(ellipses=[(.5, .42, .17, .17, 0, 180, 360)],
                    cut=[(.5, .42, .145, .15, 0, 0, 360)])
    p.paint(handle, _dark(colour, 0.85), 0.4, gloss=0.4)
    for x in (.345, .655):
        p.dots([(x, .42)], 0.012, metal)
    body = p.mask([[(.22, .42), (.78, .42), (.84, .80), (.16, .80)]],
                  ellipses=[(.5, .80, .34, .02, 0, 0, 180)])
    p.paint(body, tex, 0.3, gloss=0.35)
    flap = p.mask([[(.22, .42), (.78, .42), (.79, .53), (.5, .58), (.21, .53)]])
    p.paint(flap, tex * 0.95, 0.2, gloss=0.3)
    p.lines([[(.21, .53), (.5, .58), (.79, .53)]], 0.4, 2, 1, body)
    p.lines([[(.235, .435), (.765, .435), (.775, .52), (.5, .565), (.225, .52), (.235, .435)]],
            0.25, 1, 0.4, body)  # stitching
    clasp = p.mask([[(.47, .55), (.53, .55), (.53, .60), (.47, .60)]])
    p.paint(clasp, np.ones((H, W, 3), np.float32) * metal, 0.3, gloss=0.8)
    p.lines([[(.30, .62), (.31, .72), (.29, .78)], [(.70, .63), (.69, .72), (.71, .78)]],
            0.14, 5, 5, body)


def draw_hat(p: Painter, tex, colour, rng) -> None:
    if rng.random() < 0.5:  # a baseball cap
        crown = p.mask(ellipses=[(.47, .58, .24, .20, 0, 180, 360)])
        brim = p.mask(ellipses=[(.70, .585, .20, .045, -6, 0, 360)])
        p.paint(brim, _dark(colour, 0.85), 0.3)
        p.paint(crown, tex, 0.3, gloss=0.2)
        under = brim * p.mask([[(0, .585), (1, .585), (1, 1), (0, 1)]])
        p.paint(under, _dark(colour, 0.7), 0.2)  # the underside of the brim
        p.lines([[(.47, .38), (.40, .48), (.37, .58)], [(.47, .38), (.55, .48), (.58, .58)]],
                0.3, 1, 0.6, crown)  # panel seams
        p.dots([(.47, .385)], 0.012, colour * 0.9)
        p.lines([[(.51, .59), (.70, .60), (.89, .575)]], 0.3, 1, 0.6, brim)
    else:  # a sun hat
        brim = p.mask(ellipses=[(.5, .60, .40, .075, 0, 0, 360)])
        p.paint(brim, tex, 0.35)
        crown = p.mask(ellipses=[(.5, .59, .16, .17, 0, 180, 360)],
                       polys=[[(.34, .59), (.66, .59), (.66, .61), (.34, .61)]])
        p.paint(crown, tex * 0.97, 0.3)
        band_col = np.array(list(COLOURS.values())[int(rng.integers(len(COLOURS)))],
                            np.float32)
        band = p.mask([[(.3, .545), (.7, .545), (.7, .61), (.3, .61)]]) * crown
        p.paint(band, np.ones((H, W, 3), np.float32) * band_col, 0.1)
        p.lines([[(.16, .62), (.5, .665), (.84, .62)]], 0.2, 4, 4, brim)


DRAW = {"Tshirt": draw_tshirt, "Shirt": draw_shirt, "Hoodie": draw_hoodie, "Dress": draw_dress,
        "Trousers": draw_trousers, "Skirt": draw_skirt, "Shoe": draw_shoe,
        "Handbag": draw_handbag, "Hat": draw_hat}


def render(item_type: str, colour_name: str, pattern: str, rng: np.random.Generator
           ) -> np.ndarray:
    """One product photo: RGB uint8 HxWx3 on a white studio background."""
    colour = np.clip(np.array(COLOURS[colour_name], np.float32) * rng.uniform(0.93, 1.07),
                     0, 255)
    p = Painter(rng)
    DRAW[item_type](p, fabric(pattern, colour, rng), colour, rng)
    return p.finish()


def product_name(item_type: str, colour: str, pattern: str, rng: np.random.Generator) -> str:
    """e.g. "Navy blue striped cotton shirt"."""
    materials, nouns = TYPES[item_type][3], TYPES[item_type][4]
    words = [colour.lower(), PRINT_WORD[pattern], materials[int(rng.integers(len(materials)))],
             nouns[int(rng.integers(len(nouns)))]]
    text = " ".join(w for w in words if w)
    return text[0].upper() + text[1:]


def generate(out: str | Path, per_combination: int = 1, seed: int = 7) -> Path:
    """Write images/<id>.jpg and metadata.csv under ``out``; returns ``out``. Idempotent.
    Every type comes in every colour plain and in a seeded choice of prints (about 400 photos
    with ``per_combination=2``)."""
    out = Path(out)
    done = out / "metadata.csv"
    if done.is_file():
        return out
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = np.random.default_rng(seed + 1)  # its own stream: names and prices
    rows = []
    n = 0
    for item_type, (genders, patterns, base, _, _) in TYPES.items():
        printed = [(c, pt) for c in COLOURS for pt in patterns if pt != "Solid"]
        keep = set(int(i) for i in rng.choice(len(printed), min(10, len(printed)),
                                              replace=False))
        combos = [(c, "Solid") for c in COLOURS] + [printed[i] for i in sorted(keep)]
        for colour, pattern in combos:
            for _ in range(per_combination):
                n += 1
                item_id = f"demo{n:04d}"
                gender = genders[int(rng.integers(len(genders)))]
                img = render(item_type, colour, pattern, rng)
                cv2.imwrite(str(out / "images" / f"{item_id}.jpg"), img[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
                rows.append({"id": item_id, "type": item_type, "colour": colour,
                             "pattern": pattern, "gender": gender,
                             "name": product_name(item_type, colour, pattern, names),
                             "price": f"{base + 5 * int(names.integers(6))}.99"})
    tmp = out / "metadata.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(done)  # written last: its presence means the catalogue is complete
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="Render FAI's demo catalogue.")
    p.add_argument("out", help="folder to write images/ and metadata.csv into")
    p.add_argument("--per-combination", type=int, default=1)
    a = p.parse_args()
    print(generate(a.out, a.per_combination))


if __name__ == "__main__":
    main()
