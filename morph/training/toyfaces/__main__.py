"""``python -m morph.training.toyfaces OUT.png [--n N] [--size S] [--seed K]``: render a grid of random
faces to look at, and print how fast they rendered."""

from __future__ import annotations

import argparse
import time

from morph.training.toyfaces import grid, render, sample_params, write_png


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m morph.training.toyfaces", description=__doc__)
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--n", type=int, default=64, help="number of faces (default 64)")
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cols", type=int, default=8, help="faces per grid row (default 8)")
    args = parser.parse_args(argv)
    params = sample_params(args.seed, args.n)
    start = time.perf_counter()
    images = render(params, args.size)
    seconds = time.perf_counter() - start
    write_png(args.out, grid(images, args.cols))
    rate = args.n / seconds
    print(f"rendered {args.n} faces at {args.size}px in {seconds:.3f}s ({rate:.0f} images/s); wrote {args.out}")


if __name__ == "__main__":
    main()
