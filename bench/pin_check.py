"""What a ``sha256:`` pin costs on a cached download: the first check after the file changed hashes its bytes,
later ones read the ``.checked`` record (keyed by size, mtime, ctime and inode). Prints both and the ratio; run:
    PYTHONPATH=. python bench/pin_check.py 256      (MiB)"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from morph.models.download import cached_path, download


def main(mib: int) -> None:
    url = "http://127.0.0.1:9/model.pkl"  # never contacted: the file is put in the cache first
    with tempfile.TemporaryDirectory() as tmp:
        path = cached_path(url, Path(tmp))
        path.parent.mkdir(parents=True)
        data = os.urandom(mib << 20)
        path.write_bytes(data)
        pin = hashlib.sha256(data).hexdigest()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            download(url, Path(tmp), sha256=pin, quiet=True)
            times.append(time.perf_counter() - start)
    print(f"{mib} MiB pinned download: first check {times[0] * 1e3:.0f} ms (hashes the bytes, "
          f"{mib / times[0]:.0f} MiB/s), then {min(times[1:]) * 1e3:.2f} ms per check, ratio "
          f"{times[0] / min(times[1:]):.0f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
