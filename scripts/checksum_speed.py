"""How fast checkpoint/export checksums are: MB/s of CRC-32 (what the trainer records) next to BLAKE2b and
a plain read of the same file, in one run, file in the page cache (the cost added to a save or a load).

    python scripts/checksum_speed.py [--mb 512] [--out checksum_speed.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time

from torchtitan_vla.utils.checksums import CHUNK_BYTES, file_crc32


def _read(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(CHUNK_BYTES):
            pass


def _blake2b(path: str) -> None:
    digest = hashlib.blake2b()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="checksum_speed.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "shard.bin")
        with open(path, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(2**20))
        results = {}
        for name, fn in (("read", _read), ("crc32", file_crc32), ("blake2b", _blake2b)):
            fn(path)  # warm the page cache
            best = min(_timed(fn, path) for _ in range(args.repeats))
            results[name] = args.mb / best
            print(f"{name:8s} {results[name]:8.0f} MB/s")
    print(f"crc32 / read: {results['crc32'] / results['read']:.2f}, blake2b / read: {results['blake2b'] / results['read']:.2f}")
    with open(args.out, "w") as f:
        json.dump({"mb": args.mb, "mb_per_s": results}, f, indent=1)


def _timed(fn, path: str) -> float:
    t0 = time.perf_counter()
    fn(path)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
