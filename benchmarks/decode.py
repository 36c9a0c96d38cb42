"""Benchmark of the JPEG codecs: decode (``read_image``) and encode (``encode_image``), each
against the other library in the same run.

    python benchmarks/decode.py [--size 450] [--quality 95] [--repeats 300]

Decode: ``read_image`` decodes JPEGs with libjpeg-turbo through ``simplejpeg`` (``strict=True``,
so data damage that libjpeg only warns about is an error naming the file). Reference in the same
run: ``cv2.imdecode`` + BGR->RGB on the same bytes (what ``read_image`` did before). Prints both
per-image times and their ratio, and checks the pixels are identical.

Encode: ``encode_image`` (RGB->BGR + ``cv2.imencode``, what every stage writes) against
``simplejpeg.encode_jpeg`` with the same quality and 4:2:0 subsampling, at the source size and at
the 256² crop size; prints both times, the ratio, and whether the bytes are equal (they are not:
the determinism of a stage's JPEGs is defined by ``encode_image``, so simplejpeg is only taken
where it would keep the bytes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import simplejpeg

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _machine import print_machine  # noqa: E402

from face3d_data.io import encode_image, read_image, write_image  # noqa: E402


def best_of(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - started) / repeats)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=450)
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    print_machine()
    rng = np.random.default_rng(0)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8), (9, 9), 3)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.jpg")
        write_image(path, rgb, quality=args.quality)
        data = np.fromfile(path, np.uint8)
        assert np.array_equal(read_image(path), cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_UNCHANGED),
                                                              cv2.COLOR_BGR2RGB))
        times = {}
        for name, fn in (("opencv (lenient)", lambda: cv2.cvtColor(
                cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)),
                         ("read_image (strict)", lambda: read_image(path))):
            fn()
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(args.repeats):
                    fn()
                best = min(best, (time.perf_counter() - started) / args.repeats)
            times[name] = best
            print(f"{name:22s} {best * 1e3:7.3f} ms/image")
    print(f"strict / lenient: {times['read_image (strict)'] / times['opencv (lenient)']:.2f}x "
          f"({args.size}², quality {args.quality}); pixels identical")
    for size in (args.size, 256):
        image = np.ascontiguousarray(rgb[:size, :size])
        ours = encode_image(image, ".jpg", args.quality)
        other = simplejpeg.encode_jpeg(image, quality=args.quality, colorspace="RGB", colorsubsampling="420")
        t_cv = best_of(lambda im=image: encode_image(im, ".jpg", args.quality), args.repeats)
        t_sj = best_of(lambda im=image: simplejpeg.encode_jpeg(im, quality=args.quality, colorspace="RGB",
                                                               colorsubsampling="420"), args.repeats)
        print(f"encode {size}²: encode_image (opencv) {t_cv * 1e3:.3f} ms, simplejpeg {t_sj * 1e3:.3f} ms "
              f"(x{t_cv / t_sj:.2f}); {len(ours)} vs {len(other)} bytes, bytes equal: {ours == other}")


if __name__ == "__main__":
    main()
