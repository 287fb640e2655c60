"""Deterministic random streams and O(1)-memory index permutations.

Every random number of the synthetic archive comes from a stream named by
``(seed, purpose, *keys)`` through :class:`numpy.random.SeedSequence`
spawn keys, so that the value drawn for spectrum ``i`` depends only on the
master seed and ``i``: output is bit-identical whatever the number of worker
processes or the order in which spectra are made.
"""

from __future__ import annotations

import numpy as np

#: Stream purposes (the first element of every spawn key).
STARS = 0
PROGRAMMES = 1
OBSERVATION = 2
NOISE = 3
HEADER = 4
PERMUTATION = 5
CALIBRATION = 6

_MASK64 = (1 << 64) - 1


def stream(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """Random generator for one purpose and key tuple.

    Parameters
    ----------
    seed : int
        Master seed of the run (non-negative).
    purpose : int
        One of the module constants (``STARS``, ``OBSERVATION``, ...).
    *keys : int
        Further non-negative integers, e.g. the spectrum index.

    Returns
    -------
    numpy.random.Generator
    """
    seq = np.random.SeedSequence(seed, spawn_key=(purpose, *keys))
    return np.random.Generator(np.random.PCG64(seq))


def key64(seed: int, purpose: int, *keys: int) -> int:
    """A 64-bit integer derived from ``(seed, purpose, *keys)``."""
    seq = np.random.SeedSequence(seed, spawn_key=(purpose, *keys))
    return int(seq.generate_state(1, np.uint64)[0])


def mix64(x: int) -> int:
    """SplitMix64 finaliser: a fast, well-mixed 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class IndexPermutation:
    """A seeded bijection of ``range(n)`` evaluated one index at a time.

    A four-round Feistel network on the smallest even number of bits that
    covers ``n``, with cycle walking to stay inside ``range(n)``: memory is
    O(1) whatever ``n`` and each evaluation costs a few microseconds.

    Parameters
    ----------
    n : int
        Size of the domain (>= 1).
    key : int
        Any integer; different keys give unrelated permutations.
    """

    def __init__(self, n: int, key: int) -> None:
        if n < 1:
            raise ValueError(f"permutation domain must be non-empty, got n={n}")
        bits = max(2, (n - 1).bit_length())
        bits += bits % 2
        self.n = n
        self._half = bits // 2
        self._mask = (1 << self._half) - 1
        self._keys = tuple(mix64((key * 4 + r) & _MASK64) for r in range(4))

    def _feistel(self, x: int) -> int:
        left, right = x >> self._half, x & self._mask
        for k in self._keys:
            left, right = right, left ^ (mix64(right ^ k) & self._mask)
        return (left << self._half) | right

    def __call__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} outside the permutation domain [0, {self.n})")
        x = self._feistel(i)
        while x >= self.n:
            x = self._feistel(x)
        return x
