#!/usr/bin/env python3
"""WebP and GIF test images, each with what Pillow decodes from it (Image.open(f).convert("RGB"))
saved as a PNG beside it (<name>.expected.png), which test_image compares blip's decoding with.

  .venv/bin/python tests/data/images/make_webp_gif.py tests/data/images
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(out: Path) -> None:
    rng = np.random.default_rng(7)
    out.mkdir(parents=True, exist_ok=True)
    h, w = 37, 21  # over 16 rows: Pillow interlaces GIFs only then
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.clip(np.stack([x * 12, y * 19, (x + y) * 7], -1) + rng.integers(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    alpha = (rng.integers(0, 256, (h, w))).astype(np.uint8)
    files = {}
    Image.fromarray(rgb, "RGB").save(out / "lossless.webp", lossless=True)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(out / "alpha.webp", lossless=True, exact=True)
    Image.fromarray(rgb, "RGB").save(out / "lossy.webp", quality=80)
    pal = Image.fromarray(rgb, "RGB").quantize(colors=37, method=Image.Quantize.MEDIANCUT)
    pal.save(out / "plain.gif", interlace=False)
    pal.save(out / "interlaced.gif", interlace=True)
    second = Image.fromarray(255 - rgb, "RGB").quantize(colors=16)
    pal.save(out / "animated.gif", save_all=True, append_images=[second], duration=100, loop=0)
    for name in ["lossless.webp", "alpha.webp", "lossy.webp", "plain.gif", "interlaced.gif", "animated.gif"]:
        Image.open(out / name).convert("RGB").save(out / (name + ".expected.png"))
        print(name, (out / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/images"))
