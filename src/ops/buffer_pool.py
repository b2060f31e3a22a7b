"""Reuse the memory of large CPU output tensors once every tensor using it has died.

A fresh large tensor comes from mmap (or from a heap that malloc grows and trims again), and its first write
page-faults every 4 kB page, which the kernel zero-fills. For an operator that streams through memory in a
few milliseconds (the IRNN scan), faulting in a fresh output can cost more than the computation itself (see
README's performance section); a pool hands the same memory back to the next call of the same size.
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np
import torch
from torch import Tensor


class BufferPool:
    """Uninitialised CPU tensors whose memory is recycled.

    ``empty(shape, dtype)`` returns a tensor backed by a numpy buffer; a weakref finalizer on the wrapped array
    object (kept alive by the tensor's storage) hands the buffer back to the pool when the last tensor using it
    dies. Sizes under ``min_bytes`` (1 MB) or over ``max_bytes`` get plain ``torch.empty``. The pool holds at
    most ``max_bytes`` of free buffers (0 turns pooling off); buffers of other sizes are dropped first when it
    is full.
    """

    min_bytes = 1 << 20

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._free: dict[tuple, list] = {}
        self._lock = threading.Lock()

    def empty(self, shape: tuple, dtype: torch.dtype) -> Tensor:
        numel = math.prod(shape)
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        if nbytes < self.min_bytes or nbytes > self.max_bytes:
            return torch.empty(shape, dtype=dtype)
        key = (numel, dtype)
        with self._lock:
            free = self._free.get(key)
            base = free.pop() if free else None
        if base is None:
            base = np.empty(numel, dtype=torch.empty((), dtype=dtype).numpy().dtype)
        handle = base[:]  # a new array object: its death means the tensor's storage died
        weakref.finalize(handle, self._release, key, base)
        return torch.from_numpy(handle).view(shape)

    def _release(self, key: tuple, base) -> None:
        with self._lock:
            held = sum(b.nbytes for bufs in self._free.values() for b in bufs)
            if held + base.nbytes > self.max_bytes:
                for k in [k for k in self._free if k != key]:
                    held -= sum(b.nbytes for b in self._free.pop(k))
            if held + base.nbytes <= self.max_bytes:
                self._free.setdefault(key, []).append(base)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
