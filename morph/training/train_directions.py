"""Train the built-in directions: sample the built-in generator, score the images with the built-in classifier,
fit one direction per attribute by morph's SVM pipeline (``morph.directions``), write them beside the weights.

``python -m morph.training.train_directions [--n 12000] [--ratio 0.1] [--truncation 1] [--seed 1000000]``

The ratio was chosen on the shipped generator by ``tests/test_directions.py``'s measure (20 faces moved
from −3 to +3 along smile; the change in the glasses score, plain against conditioned on glasses):
ratio 0.02 gave 0.152 → 0.073, 0.1 gave 0.168 → 0.073, and using every sample (0.5) put the normal
where the scores are ambiguous (validation 88–97 %) and conditioning no longer helped (0.041 → 0.159).

Re-run it whenever the shipped generator changes: every direction records the generator's sha256.
Prints one line per direction: validation accuracy, samples per side, spread of the samples along it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

import numpy as np

from morph.builtin import WEIGHTS_DIR, load_builtin_classifier, load_builtin_generator
from morph.core.progress import Progress, log
from morph.directions import map_batches, save_array, seeds_z, spread, train_svm, w_images

OUT = WEIGHTS_DIR / "directions"


def sample_scores(G, clf, n: int, seed: int, psi: float = 1.0, batch: int = 128) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """W ``[n, w_dim]`` of seeds ``seed`` … ``seed + n - 1`` and the classifier's probability per attribute."""
    w = np.concatenate(list(map_batches(G, seeds_z(seed, n, G.z_dim), psi)))
    progress = Progress("sample", n, unit="images")
    probs = []
    for frames in w_images(G, w, batch):
        probs.append(clf.predict(frames)["probs"])
        progress.advance(len(frames))
    progress.close()
    probs = np.concatenate(probs)
    return w, {name: probs[:, i] for i, name in enumerate(clf.attributes)}


def main(argv: Optional[list[str]] = None) -> None:
    """Sample, score, fit and write every built-in direction; print a table of how well each separates."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=12000, help="generator samples to score")
    parser.add_argument("--ratio", type=float, default=0.1, help="top and bottom fraction kept per attribute")
    parser.add_argument("--split", type=float, default=0.7, help="training fraction; the rest validates")
    parser.add_argument("--truncation", type=float, default=1.0, help="psi of the samples")
    parser.add_argument("--seed", type=int, default=1_000_000, help="first seed (far from the seeds scenes use)")
    parser.add_argument("--out", type=Path, default=OUT, help="destination folder")
    args = parser.parse_args(argv)

    start = time.monotonic()
    G, clf = load_builtin_generator(), load_builtin_classifier()
    w, scores = sample_scores(G, clf, args.n, args.seed, args.truncation)
    log(f"sampled and scored {args.n} faces in {time.monotonic() - start:.0f} s")
    rows = []
    for name, values in scores.items():
        fit = train_svm(w, values, args.ratio, args.split, "w")
        sd = spread(w, fit.direction, "w")
        save_array(args.out / f"{name}.npy", fit.direction,  # atomic; creates the folder
                   {"method": "svm", "attribute": name, "space": "w", "accuracy": fit.accuracy,
                    "positives": fit.positives, "negatives": fit.negatives, "validation": fit.validation,
                    "ratio": args.ratio, "split": args.split, "count": args.n, "seed": args.seed,
                    "truncation": args.truncation, "spread": sd, "scores": "morph builtin classifier",
                    "model": "builtin", "model_sha256": G.info.sha256})
        rows.append((name, fit.accuracy, fit.positives, fit.validation, sd))
    print(f"{'direction':<10} {'val acc':>8} {'per side':>9} {'held out':>9} {'spread':>7}")
    for name, acc, side, val, sd in rows:
        print(f"{name:<10} {acc:>8.1%} {side:>9d} {val:>9d} {sd:>7.3f}")
    print(f"wrote {len(rows)} directions to {args.out} in {time.monotonic() - start:.0f} s "
          f"(generator sha256 {G.info.sha256[:12]})")


if __name__ == "__main__":
    main()
