"""Keys and values of past prompts, by blocks, so that a prompt that starts the same is not recomputed.

Requests to one server share long prefixes: the chat template's system prompt, the same tool
definitions on every call of an agent, the earlier turns of a conversation. A block holds the
keys and values of ``BLOCK`` tokens for every layer, keyed by a digest of *all* the tokens up
to its end (a chain), so a hit means the whole prefix matches, and the attention over it is
exactly what the model would compute again. Least recently used blocks go first once the
cache holds ``capacity_bytes``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

BLOCK = 32


def block_digests(tokens: list[int], start: int = 0, previous: bytes = b"") -> list[bytes]:
    """The chain digests of the whole blocks of ``tokens`` from block ``start`` on."""
    out: list[bytes] = []
    for i in range(start, len(tokens) // BLOCK):
        data = np.asarray(tokens[i * BLOCK : (i + 1) * BLOCK], dtype=np.int64).tobytes()
        previous = hashlib.blake2b(previous + data, digest_size=16).digest()
        out.append(previous)
    return out


class PrefixCache:
    """Blocks of keys and values (``[layers, 2, kv_heads, BLOCK, head_dim]`` each), LRU by bytes."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.blocks: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = 0  # tokens served from the cache
        self.misses = 0  # prompt tokens computed

    def __len__(self) -> int:
        return len(self.blocks)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self.blocks

    def lookup(self, digests: list[bytes]) -> list[torch.Tensor]:
        """The cached blocks of the longest prefix of ``digests``."""
        found: list[torch.Tensor] = []
        for digest in digests:
            block = self.blocks.get(digest)
            if block is None:
                break
            self.blocks.move_to_end(digest)
            found.append(block)
        return found

    def put(self, digest: bytes, block: torch.Tensor) -> None:
        if digest in self.blocks or self.capacity_bytes <= 0:
            return
        size = block.numel() * block.element_size()
        if size > self.capacity_bytes:
            return
        while self.bytes + size > self.capacity_bytes and self.blocks:
            _, old = self.blocks.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()
        self.blocks[digest] = block
        self.bytes += size
