"""morph's built-in model: a StyleGAN2 generator fitted to the procedural faces of
``morph.training.toyfaces`` and an attribute classifier trained on the same faces, shipped in the
package (``morph/builtin/weights/``) so every command works offline on a fresh machine.

>>> from morph.builtin import load_builtin_generator, load_builtin_classifier
>>> G = load_builtin_generator()                 # a morph.stylegan2.Generator, 64 px
>>> clf = load_builtin_classifier()
>>> clf.predict(G(torch.randn(4, G.z_dim)))["smile"]     # P(smiling) per image

``morph.models.resolver`` turns the model name ``builtin`` into the shipped file. Nothing here imports
torch at import time, and nothing here imports the rest of morph's front ends.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# generator: the StyleGAN2; classifier: the judge (attribute probabilities, features for the Fréchet
# distance); perceptual: a second classifier (other seed, other faces) whose activations are the
# generator's perceptual training loss, so that the judge stays independent of training; encoder: image → W+,
# projection's first guess (``python -m morph.training.train_encoder``).
FILES = {"generator": "generator.safetensors", "classifier": "classifier.safetensors",
         "perceptual": "perceptual.safetensors", "encoder": "encoder.safetensors"}


def builtin_path(name: str = "generator") -> Path:
    """Path of the shipped ``generator``, ``classifier``, ``perceptual`` or ``encoder`` weights (whether or not the file exists yet)."""
    if name not in FILES:
        raise ValueError(f"unknown built-in model {name!r}; choose from {sorted(FILES)}")
    return WEIGHTS_DIR / FILES[name]


def direction_path(name: str) -> Path:
    """File of the shipped direction ``name`` (``builtin:NAME`` in a scene); a MorphError lists the ones there are."""
    from morph.core.errors import MorphError

    folder = WEIGHTS_DIR / "directions"
    available = sorted(p.stem for p in folder.glob("*.npy"))
    if name not in available:
        raise MorphError(f"no built-in direction named {name!r}",
                         hint=f"choose from {', '.join(available)}" if available else
                         "none are installed; train them: python -m morph.training.train_directions")
    return folder / f"{name}.npy"


def load_builtin_generator(device: str = "cpu"):
    """The shipped generator (``morph.checkpoints.loading.load_generator`` on :func:`builtin_path`)."""
    from morph.checkpoints.loading import load_generator

    return load_generator(builtin_path("generator"), device=device)


def load_builtin_classifier(device: str = "cpu"):
    """The shipped attribute classifier (see :mod:`morph.builtin.classifier`)."""
    from morph.builtin.classifier import load_classifier

    return load_classifier(builtin_path("classifier"), device=device)


__all__ = ["WEIGHTS_DIR", "builtin_path", "direction_path", "load_builtin_classifier",
           "load_builtin_generator"]
