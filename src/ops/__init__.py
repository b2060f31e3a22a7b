"""Plumbing for compiled operators: building and loading C code at first use (:mod:`src.ops.cbuild`) and
recycling large output buffers (:mod:`src.ops.buffer_pool`).

The operators themselves (their maths, autograd and kernels) live beside the models that use them
(``src/models/irnn.py`` and its ``csrc/``); this room holds what is not about any one operator: compilers,
caches, ctypes, memory. Like ``src/models``, it imports only the standard library, numpy and torch.
"""
