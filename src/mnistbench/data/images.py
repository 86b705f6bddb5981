"""Your own images as model input: decoding, and the MNIST and Fashion-MNIST preprocessing recipes.

The one implementation `predict` (and a server) uses: `from_bytes(data, dataset)` is
decode -> preprocess -> uint8 (28, 28), bright ink on black as the data sets store their images
(models then take `data.pipeline.normalize` of it). Any size, colour mode, alpha and EXIF orientation.
Bad input (not an image, truncated, over the pixel limit, blank) is one UserError. `encode_png` and
`draw_boxes` write images back out.

MNIST recipe (`to_mnist`), how MNIST itself was made from NIST's scans:
1. flatten alpha onto a background (`flatten_alpha`): transparent pixels take the colour that is not
   the drawing's, so a black or a white stroke on a transparent canvas both stand out;
2. grey: ITU-R 601 luma, 0..255 (`grey_and_alpha`);
3. polarity from the border (`polarity`): a background lighter than the ink (dark ink on light paper)
   is inverted; a white-on-black image is kept;
4. remove the background level (`remove_background`): subtract the border's median plus a noise margin,
   then stretch the ink's level to 255;
5. find the digit's bounding box (`ink_box`): the rows and columns holding ink, ignoring stray specks;
6. fit the box into 20 x 20 keeping the aspect ratio (`fit`, Lanczos);
7. pad to 28 x 28 and centre by centre of mass (`centre_of_mass`): the integer shift that puts it at
   pixel (14, 14), where MNIST's digits have theirs.

Fashion-MNIST recipe (`to_fashion`), after Xiao et al. 2017 (product photos on white):
1. flatten alpha onto white; 2. grey; 3. polarity from the border; 4. remove the background level;
5. trim the edges within 5 % of full intensity of the background; 6. fit the longest side to 28
keeping the aspect ratio; 7. centre on a black 28 x 28 canvas.

Detector canvas (`to_canvas`, for frcnn runs): MNIST steps 1-5, then the ink scaled so a digit stands
about 20 px tall (as in MNIST and the detector's training scenes) while the whole ink fits the
canvas, centred on it, as float in [0, 1] (ink = 1).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UserError

SIDE = 28                   # the data sets' image side
DIGIT_BOX = 20              # MNIST fits each digit into 20 x 20 ...
CENTRE = 14.0               # ... and puts its centre of mass at pixel (14, 14) (row, column index)
MAX_PIXELS = 64_000_000     # pixel limit of one image decoded alone (predict): a 48-MP phone photo fits, a
                            #   decompression bomb does not
SERVED_MAX_PIXELS = 16_000_000  # a server's default limit, lower: it decodes several requests' images at once
FASHION_TRIM = 0.05         # Fashion-MNIST trims edges within 5 % of full intensity of the background
DATASETS = ("mnist", "fashion-mnist")


def decode(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The first frame of an encoded image (PNG, JPEG, BMP, GIF, WebP, TIFF, ...), EXIF orientation applied.

    The size is checked against `max_pixels` from the header, before any pixel is decoded.
    Not an image, a truncated or corrupt file, and an image over the limit are each one UserError.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise UserError(f"image is {w}×{h} = {w * h:,} pixels, over the limit of {max_pixels:,}; "
                                "scale it down (or crop it) first")
            img.load()
            return ImageOps.exif_transpose(img)
    except UserError:
        raise
    except UnidentifiedImageError:
        raise UserError("not an image Pillow can read (PNG, JPEG, BMP, GIF, WebP, TIFF, ...)") from None
    except Image.DecompressionBombError as e:
        raise UserError(f"{e}; scale it down first") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:
        raise UserError(f"truncated or corrupt image ({str(e).strip() or type(e).__name__})") from None


def grey_and_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 luma in 0..255 (ITU-R 601) and (H, W) float32 opacity in 0..1, from any Pillow mode."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):  # 16/32-bit grey: scale to 0..255
        a = np.asarray(img, dtype=np.float32)
        top = 1.0 if img.mode == "F" and a.max() <= 1.0 else 255.0 if a.max() <= 255 else 65535.0
        return np.clip(a * (255.0 / top), 0, 255), np.ones_like(a)
    try:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)  # (H, W, 4)
    except ValueError:
        raise UserError(f"colour mode {img.mode} is not supported; save the image as RGB or grey") from None
    luma = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return luma, rgba[..., 3] / 255.0


def flatten_alpha(grey: np.ndarray, alpha: np.ndarray, background: float | None = None) -> np.ndarray:
    """`grey` composited onto a plain background by its opacity `alpha`.

    Default background: where the opaque pixels cover under half the image they are the drawing, and
    the background contrasts with them (white behind dark strokes, black behind light ones); where
    they cover more, they hold their own paper, and the background is its median level.
    """
    if alpha.min() >= 1.0:
        return grey
    if background is None:
        weight = float(alpha.sum())
        if weight < 0.5 * alpha.size:
            ink = float((grey * alpha).sum()) / weight if weight > 0 else 0.0
            background = 255.0 if ink < 127.5 else 0.0
        else:
            background = float(np.median(grey[alpha >= 0.5]))
    return grey * alpha + background * (1.0 - alpha)


def border(x: np.ndarray) -> np.ndarray:
    """The pixels of the outer ring, about 2 % of the shorter side wide (at least one pixel)."""
    k = max(1, round(0.02 * min(x.shape)))
    return np.concatenate([x[:k].ravel(), x[-k:].ravel(), x[k:-k, :k].ravel(), x[k:-k, -k:].ravel()])


def polarity(x: np.ndarray) -> np.ndarray:
    """`x` with bright ink on a dark background: inverted when the border is lighter than the ink.

    The ink is whichever extreme lies farther from the border's median level, so a digit in dark ink
    on mid-grey paper is inverted too; the extremes are robust percentiles, not single noisy pixels.
    """
    bg = float(np.median(border(x)))
    lo, hi = np.percentile(x, [0.05, 99.95])
    return 255.0 - x if bg - lo > hi - bg else x


def remove_background(x: np.ndarray, *, margin: float, peak_percentile: float) -> np.ndarray:
    """Bright-ink `x` with the background at 0 and the ink's level at 255.

    Subtracts the border's median plus a margin of 4 noise sigmas (from the border's spread) or
    `margin` of the contrast, whichever is larger; then scales the `peak_percentile` of the remaining
    ink to 255. A blank image (no ink above the margin) is a UserError.
    """
    ring = border(x)
    bg = float(np.median(ring))
    sigma = 1.4826 * float(np.median(np.abs(ring - bg)))  # robust noise estimate (MAD)
    cut = max(4.0 * sigma, margin * (float(x.max()) - bg))
    out = np.clip(x - bg - cut, 0.0, None)
    ink = out[out > 0]
    if ink.size == 0:
        raise UserError("no ink found: the image is blank (one flat level)")
    return np.clip(out * (255.0 / float(np.percentile(ink, peak_percentile))), 0.0, 255.0)


def ink_box(x: np.ndarray, *, level: float = 0.0, speck: float = 0.05) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the pixels brighter than `level`, bottom and right exclusive.

    Rows and columns holding fewer than `speck` of the fullest row's (column's) ink pixels are left out,
    so stray noise specks far from the drawing do not stretch the box.
    """
    ink = x > level
    rows, cols = ink.sum(axis=1), ink.sum(axis=0)
    if rows.max(initial=0) == 0:
        raise UserError("no ink found: the image is blank (one flat level)")
    r = np.flatnonzero(rows >= max(1.0, speck * rows.max()))
    c = np.flatnonzero(cols >= max(1.0, speck * cols.max()))
    return int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1


def fit(x: np.ndarray, box: tuple[int, int, int, int], size: float) -> np.ndarray:
    """The `box` of `x` resized (Lanczos, antialiased) so its longer side is `size`, keeping the aspect ratio."""
    top, bottom, left, right = box
    crop = np.ascontiguousarray(x[top:bottom, left:right], dtype=np.float32)
    h, w = crop.shape
    s = size / max(h, w)
    shape = (max(1, round(w * s)), max(1, round(h * s)))  # Pillow's (width, height)
    return np.clip(np.asarray(Image.fromarray(crop).resize(shape, Image.LANCZOS)), 0.0, 255.0)


def centre_of_mass(patch: np.ndarray) -> np.ndarray:
    """`patch` on a black 28 x 28 canvas, shifted by whole pixels so its centre of mass is at (14, 14)."""
    h, w = patch.shape
    mass = float(patch.sum())
    cy = float((patch.sum(axis=1) * np.arange(h)).sum()) / mass
    cx = float((patch.sum(axis=0) * np.arange(w)).sum()) / mass
    top = min(max(round(CENTRE - cy), 0), SIDE - h)  # the whole patch stays on the canvas
    left = min(max(round(CENTRE - cx), 0), SIDE - w)
    return _paste(patch, top, left)


def centre(patch: np.ndarray) -> np.ndarray:
    """`patch` in the middle of a black 28 x 28 canvas."""
    h, w = patch.shape
    return _paste(patch, (SIDE - h) // 2, (SIDE - w) // 2)


def _paste(patch: np.ndarray, top: int, left: int) -> np.ndarray:
    out = np.zeros((SIDE, SIDE), dtype=np.uint8)
    out[top:top + patch.shape[0], left:left + patch.shape[1]] = np.rint(patch).astype(np.uint8)
    return out


def _bright_ink(img: Image.Image, background: float | None, margin: float, peak: float) -> np.ndarray:
    """Steps 1-4: flatten alpha, grey, polarity, remove the background."""
    grey = flatten_alpha(*grey_and_alpha(img), background)
    return remove_background(polarity(grey), margin=margin, peak_percentile=peak)


def to_mnist(img: Image.Image) -> np.ndarray:
    """uint8 (28, 28) by the MNIST recipe (module docstring): a digit as MNIST stores one."""
    x = _bright_ink(img, None, margin=0.1, peak=90.0)
    return centre_of_mass(fit(x, ink_box(x), DIGIT_BOX))


def to_fashion(img: Image.Image) -> np.ndarray:
    """uint8 (28, 28) by the Fashion-MNIST recipe (module docstring)."""
    x = _bright_ink(img, 255.0, margin=0.0, peak=99.5)
    return centre(fit(x, ink_box(x, level=FASHION_TRIM * 255), SIDE))


def preprocess(img: Image.Image, dataset: str) -> np.ndarray:
    """uint8 (28, 28) by the recipe of the data set a model was trained on ('mnist' or 'fashion-mnist')."""
    if dataset not in DATASETS:
        raise UserError(f"no preprocessing recipe for data set {dataset!r}; known: {', '.join(DATASETS)}")
    return to_mnist(img) if dataset == "mnist" else to_fashion(img)


def from_bytes(data: bytes, dataset: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes -> uint8 (28, 28): decode, then the data set's recipe."""
    return preprocess(decode(data, max_pixels=max_pixels), dataset)


@dataclass(frozen=True)
class Placement:
    """Where the ink of an image went on a detector canvas: canvas = (image - origin) * scale + offset."""

    scale_x: float
    scale_y: float
    origin: tuple[int, int]    # (x, y) of the ink box's corner in the image
    offset: tuple[int, int]    # (x, y) of the same corner on the canvas
    image_size: tuple[int, int]  # (width, height) of the image

    def to_image(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A canvas box (x1, y1, x2, y2) in the image's pixel coordinates, clipped to the image."""
        (ox, oy), (cx, cy), (w, h) = self.origin, self.offset, self.image_size
        x1, y1, x2, y2 = box
        xs = [min(max((v - cx) / self.scale_x + ox, 0.0), w) for v in (x1, x2)]
        ys = [min(max((v - cy) / self.scale_y + oy, 0.0), h) for v in (y1, y2)]
        return xs[0], ys[0], xs[1], ys[1]


def to_canvas(img: Image.Image, size: int, *, digit_height: float = DIGIT_BOX) -> tuple[np.ndarray, Placement]:
    """(size, size) float32 canvas in [0, 1] (ink = 1) for the detector, and where the ink went on it.

    MNIST steps 1-5, then the ink box scaled so it is `digit_height` px tall, or less where that would not
    fit the canvas with a 2-px margin, keeping the aspect ratio, and centred.
    """
    x = _bright_ink(img, None, margin=0.1, peak=90.0)
    top, bottom, left, right = box = ink_box(x)
    h, w = bottom - top, right - left
    longest = min(digit_height * max(h, w) / h, size - 4.0)  # the longer side at `digit_height` px tall
    patch = fit(x, box, longest)
    ph, pw = patch.shape
    canvas = np.zeros((size, size), dtype=np.float32)
    y0, x0 = (size - ph) // 2, (size - pw) // 2
    canvas[y0:y0 + ph, x0:x0 + pw] = patch / 255.0
    return canvas, Placement(pw / w, ph / h, (left, top), (x0, y0), (x.shape[1], x.shape[0]))


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) grey or (H, W, 3) RGB array."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def draw_boxes(img: Image.Image, boxes: list[tuple[str, tuple[float, float, float, float]]]) -> bytes:
    """PNG bytes of `img` with each (caption, (x1, y1, x2, y2)) box drawn on it in red."""
    from PIL import ImageDraw, ImageFont

    img = img.convert("RGB")
    pen = ImageDraw.Draw(img)
    width, size = max(1, round(max(img.size) / 200)), max(10, max(img.size) // 20)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font, size = ImageFont.load_default(), 11
    for caption, box in boxes:
        pen.rectangle(box, outline=(230, 30, 30), width=width)
        pen.text((box[0], max(0.0, box[1] - 1.2 * size)), caption, fill=(230, 30, 30), font=font)
    return encode_png(np.asarray(img))
