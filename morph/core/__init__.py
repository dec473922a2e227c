"""The contract and the plumbing every other layer stands on.

The ``Model`` protocol a network family implements and the ``Noise`` it draws with (``model``), the
one-line ``MorphError`` (``errors``), atomic writes and hashes (``files``), checked array reading and
the bounds untrusted input must keep (``arrays``, ``limits``), the cache folder's whole layout
(``cache``), progress and logging (``progress``), process tuning and devices (``runtime``,
``devices``), and the package version. Nothing here imports anything else of morph.
"""

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it, morph.__version__ is this
