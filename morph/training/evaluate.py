"""How well the built-in generator imitates the renderer, judged by the built-in classifier.

``python -m morph.training.evaluate [--model builtin] [--classifier builtin] [--n 1000] [--json FILE]``

For ``n`` generator samples against ``n`` renderer faces it reports:

* per attribute, the share the classifier calls positive (and its mean probability) for the
  samples, for the renderer faces, and the renderer's true rate;
* fidelity: how often the classifier's reading of G(z) agrees with the label of the face z
  stands for (unambiguous faces only);
* the Fréchet distance between the classifier's penultimate features of the samples and of
  the renderer faces, next to the floor: the same distance between two disjoint renderer sets;
* style mixing: for pairs (A, B) mixed at a crossover, among pairs the classifier reads
  differently, how often the hybrid has A's value for coarse attributes (pose, hair length,
  glasses, beard...) and B's for colour attributes (hair colour). Chance is 50 %;
* the sharpness ratio: mean squared Laplacian of the grey samples over that of the renderer
  faces (``morph.training.sharpness``).

Renderer faces are drawn at the generator's resolution (64 or 128 px); the classifier reads both
at its own 64 px. The last lines check issue 18's targets (``TARGETS``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from scipy import linalg

from morph.training.latent import LATENT_DIM, MIX_CUTOFF, attribute_source, params_from_latent
from morph.training.sharpness import sharpness_ratio
from morph.training.toyfaces import ATTRIBUTES, ambiguous, labels, render, sample_params

# Issue 18's bars: Fréchet distance ≤ 1.5× the floor, sharpness ratio ≥ 0.6, fidelity ≥ 95 % per attribute.
TARGETS = {"fid_over_floor": 1.5, "sharpness_ratio": 0.6, "fidelity": 0.95}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` [N, D] and ``b`` [M, D]."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(len(s1))
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@torch.no_grad()
def sample_images(G, z: torch.Tensor, psi: float = 1.0, batch: int = 100) -> torch.Tensor:
    """G(z) as float [N, 3, R, R] in about [-1, 1], in batches."""
    out = [G(z[i:i + batch], None, truncation_psi=psi, noise_mode="const") for i in range(0, len(z), batch)]
    return torch.cat(out)


@torch.no_grad()
def mix_images(G, za: torch.Tensor, zb: torch.Tensor, cutoff: int, batch: int = 100) -> torch.Tensor:
    """Style mixing: layers < ``cutoff`` from w(za), the rest from w(zb)."""
    out = []
    for i in range(0, len(za), batch):
        wa, wb = G.mapping(za[i:i + batch], None), G.mapping(zb[i:i + batch], None)
        ws = torch.cat([wa[:, :cutoff], wb[:, cutoff:]], dim=1)
        out.append(G.synthesis(ws, noise_mode="const"))
    return torch.cat(out)


def mixing_agreement(clf, G, za: torch.Tensor, zb: torch.Tensor, cutoff: int = MIX_CUTOFF) -> dict[str, dict]:
    """Per attribute: which source mixing at ``cutoff`` should keep it from, and among the pairs
    whose sources the classifier reads differently, the share of hybrids that match that source."""
    pa = clf.predict(sample_images(G, za))["probs"] > 0.5
    pb = clf.predict(sample_images(G, zb))["probs"] > 0.5
    pm = clf.predict(mix_images(G, za, zb, cutoff))["probs"] > 0.5
    out = {}
    for i, a in enumerate(clf.attributes):
        source = attribute_source(a, cutoff)
        differ = pa[:, i] != pb[:, i]
        want = (pa if source == "A" else pb)[:, i]
        kept = pm[differ, i] == want[differ]
        out[a] = {"from": source, "pairs": int(differ.sum()), "kept": float(kept.mean()) if differ.any() else float("nan")}
    return out


def fidelity(pred: dict[str, np.ndarray], z: np.ndarray) -> dict[str, float]:
    """Share of samples whose classifier reading matches the label of the face z stands for."""
    params = params_from_latent(z)
    y, amb = labels(params), ambiguous(params)
    return {a: float(((pred[a] > 0.5) == y[a])[~amb[a]].mean()) for a in ATTRIBUTES}


def evaluate(G, clf, n: int = 1000, seed: int = 0, psi: float = 1.0, cutoffs=(3, MIX_CUTOFF)) -> dict:
    rng = np.random.default_rng([seed, 7])
    z = rng.standard_normal((n, LATENT_DIM)).astype(np.float32)
    size = G.img_resolution
    fake_images = sample_images(G, torch.from_numpy(z), psi)
    fake = clf.predict(fake_images)
    real_params = sample_params(np.random.default_rng([seed, 8]), n)
    real_images = render(real_params, size)
    real = clf.predict(real_images)
    floor = clf.predict(render(sample_params(np.random.default_rng([seed, 9]), n), size))
    truth = labels(real_params)
    result: dict = {"n": n, "seed": seed, "psi": psi, "resolution": size, "attributes": {}}
    for a in ATTRIBUTES:
        result["attributes"][a] = {
            "generator": float((fake[a] > 0.5).mean()), "renderer": float((real[a] > 0.5).mean()),
            "renderer_true": float(truth[a].mean()),
            "generator_mean_p": float(fake[a].mean()), "renderer_mean_p": float(real[a].mean()),
            "generator_confident": float(((fake[a] < 0.1) | (fake[a] > 0.9)).mean()),
            "renderer_confident": float(((real[a] < 0.1) | (real[a] > 0.9)).mean()),
        }
    result["fidelity"] = fidelity(fake, z) if psi == 1.0 else None
    result["fid_features"] = frechet_distance(fake["features"], real["features"])
    result["fid_floor"] = frechet_distance(floor["features"], real["features"])
    result["sharpness"] = sharpness_ratio(fake_images, real_images)
    half = n // 2
    mrng = np.random.default_rng([seed, 10])
    za = torch.from_numpy(mrng.standard_normal((half, LATENT_DIM)).astype(np.float32))
    zb = torch.from_numpy(mrng.standard_normal((half, LATENT_DIM)).astype(np.float32))
    result["mixing"] = {str(c): mixing_agreement(clf, G, za, zb, c) for c in cutoffs}
    return result


def report(result: dict) -> str:
    lines = [f"{result['n']} generator samples (psi {result['psi']}) vs {result['n']} renderer faces, judged by the "
             "built-in classifier", "",
             f"{'attribute':<10}  {'generator':>9}  {'renderer':>8}  {'true':>6}   {'mean p G/R':>11}   "
             f"{'confident G/R':>13}   fidelity"]
    for a, r in result["attributes"].items():
        fid = result["fidelity"][a] if result["fidelity"] else float("nan")
        lines.append(f"{a:<10}  {100 * r['generator']:8.1f}%  {100 * r['renderer']:7.1f}%  {100 * r['renderer_true']:5.1f}%"
                     f"   {r['generator_mean_p']:.2f}/{r['renderer_mean_p']:.2f}     "
                     f"{100 * r['generator_confident']:4.0f}%/{100 * r['renderer_confident']:3.0f}%      {100 * fid:5.1f}%")
    lines += ["", f"Fréchet distance on classifier features: generator vs renderer {result['fid_features']:.3f}; "
              f"floor (renderer vs renderer) {result['fid_floor']:.3f}", ""]
    for c, table in result["mixing"].items():
        parts = [f"{a} {100 * t['kept']:.0f}% ({t['from']}, {t['pairs']})" for a, t in table.items()]
        lines.append(f"style mixing at layer {c}: kept from the expected source (chance 50%): " + ", ".join(parts))
    sharp = result["sharpness"]
    lines += [f"sharpness (mean squared Laplacian of the grey image, {result['resolution']} px): generator "
              f"{sharp['samples']:.1f}, renderer {sharp['reference']:.1f}, ratio {sharp['ratio']:.3f}", ""]
    lines += [f"target {name}: {'met' if ok else 'NOT met'} ({text})" for name, (ok, text) in targets(result).items()]
    return "\n".join(lines)


def targets(result: dict) -> dict[str, tuple[bool, str]]:
    """Issue 18's targets (``TARGETS``) for an :func:`evaluate` result: name → (met, the figures)."""
    ratio = result["fid_features"] / result["fid_floor"]
    out = {"frechet": (ratio <= TARGETS["fid_over_floor"], f"{ratio:.2f}× the floor, want ≤ {TARGETS['fid_over_floor']}×"),
           "sharpness": (result["sharpness"]["ratio"] >= TARGETS["sharpness_ratio"],
                         f"ratio {result['sharpness']['ratio']:.3f}, want ≥ {TARGETS['sharpness_ratio']}")}
    if result["fidelity"]:
        worst = min(result["fidelity"], key=result["fidelity"].get)
        out["fidelity"] = (result["fidelity"][worst] >= TARGETS["fidelity"],
                           f"lowest {worst} {100 * result['fidelity'][worst]:.1f}%, want ≥ {100 * TARGETS['fidelity']:.0f}%")
    return out


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m morph.training.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin", help="generator: 'builtin' or a checkpoint file")
    ap.add_argument("--classifier", default="builtin", help="classifier: 'builtin' or a .safetensors file")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--psi", type=float, default=1.0, help="truncation psi for the samples (default 1: none)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from morph.builtin import builtin_path
    from morph.builtin.classifier import load_classifier
    from morph.models.loader import load_model

    start = time.perf_counter()
    G = load_model(args.model)
    clf = load_classifier(builtin_path("classifier") if args.classifier == "builtin" else args.classifier)
    result = evaluate(G, clf, args.n, args.seed, args.psi)
    result["model"], result["seconds"] = str(args.model), round(time.perf_counter() - start, 1)
    result["targets_met"] = {name: ok for name, (ok, _) in targets(result).items()}
    print(report(result))
    print(f"\n({result['seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
