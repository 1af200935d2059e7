"""The transformers runtime: every sequence's new tokens packed into one forward pass.

Why this route: transformers' own continuous batching (``generation/continuous_batching``)
takes no per-request mask and appends exactly one token per request and step, so forced
tokens (fast-forward) do not fit; and a padded batch (rows of equal length) would run the
model on padding: one row with five forced tokens makes every row five tokens wide. Here the
tokens of all sequences go through the model as one packed sequence ``[1, N]`` (N = the new
tokens of the step, no padding), so the linear layers, which are nearly all of the cost, see
only real tokens. Only attention is per sequence, in :class:`_Layout`: each sequence's keys
and values sit in its own row of a preallocated buffer per layer (``[rows, kv_heads, columns,
head_dim]``, its tokens from column 0, so a token's column is its position), and one batched
attention call covers every sequence with a few new tokens, padded to the widest (a handful of
forced tokens) and masked; a long prompt (or chunk of one) attends on its own. The model's
attention function is swapped for one that does this when the runtime calls, and falls back to
the model's own implementation otherwise (``model.generate`` is unaffected).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from constrain.decoding.runtimes.base import Feed, Runtime, StepLogits
from constrain.decoding.runtimes.prefix import BLOCK, PrefixCache, block_digests

# A sequence feeding more tokens than this in a step (a prompt, a long forced run) attends on its
# own: in the batched call every row is padded to the widest feed, so one prompt remainder of 13
# tokens would make sixteen one-token rows compute thirteen queries each.
_ALONE = 4
# A feed this long is (part of) a prompt: its whole blocks go to the prefix cache.
_PROMPT_FEED = 16
_LAYOUT_KEYWORD = "constrain_layout"
DEFAULT_PREFIX_CACHE_BYTES = 256 * 1024 * 1024
_register_lock = threading.Lock()


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float | None,
            softcap: float | None) -> torch.Tensor:
    """Scaled dot-product attention; with a logit soft-cap (Gemma 2) written out."""
    if not softcap:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else q.shape[-1] ** -0.5)
    scores = torch.tanh(scores / softcap) * softcap
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v


class _Layout:
    """Where one step's packed tokens belong: rows, columns, which share the batched attention."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rows = 0  # rows in the attention batch (every sequence held)
        self.width = 1  # widest short feed
        self.cols = 1  # columns the short feeds attend over
        self.fast = False  # every row fed one token, in row order: no gather needed
        self.write_rows: torch.Tensor  # [N] row of each packed token
        self.write_cols: torch.Tensor  # [N] column (= position) of each packed token
        self.q_rows: torch.Tensor
        self.q_cols: torch.Tensor
        self.q_index: torch.Tensor  # packed index of each short token
        self.limit: torch.Tensor  # [rows, width] last column each query may see
        self.long: list[tuple[int, int, int, int]] = []  # (row, offset, tokens, columns before)
        self._masks: dict[int | None, torch.Tensor] = {}

    def mask(self, window: int | None, rep: int) -> torch.Tensor:
        """``[rows, 1, rep * width, cols]`` (True: attend), made once per step and window."""
        found = self._masks.get(window)
        if found is None:
            cols = torch.arange(self.cols, device=self.device)
            limit = self.limit[:, :, None]
            found = cols <= limit
            if window is not None:
                found = found & (cols > limit - window)
            found = found[:, None]  # [rows, 1, width, cols]
            if self.width > 1 and rep > 1:
                found = found.expand(self.rows, rep, self.width, self.cols).reshape(
                    self.rows, 1, rep * self.width, self.cols)
            self._masks[window] = found
        return found

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None,
               window: int | None, softcap: float | None) -> torch.Tensor:
        """``query`` ``[1, heads, N, dim]`` (packed); ``key``/``value`` a layer's whole buffers.
        Returns ``[1, N, heads, dim]``, as transformers' attention functions do."""
        q = query[0].transpose(0, 1)  # [N, heads, dim]
        n, heads, dim = q.shape
        kv_heads = key.shape[1]
        rep = heads // kv_heads
        rows, width = self.rows, self.width
        if self.fast:
            qs = q.reshape(rows, 1, heads, dim)
        else:
            qs = q.new_zeros(rows, width, heads, dim)
            qs[self.q_rows, self.q_cols] = q[self.q_index]
        # Query heads grouped by the key/value head they share: no copy of the cache per head.
        qs = qs.permute(0, 2, 1, 3).reshape(rows, kv_heads, rep * width, dim)
        out_s = _attend(qs, key[:rows, :, : self.cols], value[:rows, :, : self.cols],
                        self.mask(window, rep), scale, softcap)
        out_s = out_s.reshape(rows, kv_heads, rep, width, dim).permute(0, 3, 1, 2, 4).reshape(rows, width, heads, dim)
        if self.fast:
            return out_s.reshape(1, n, heads, dim)
        out = q.new_empty(n, heads, dim)
        out[self.q_index] = out_s[self.q_rows, self.q_cols]
        for row, offset, count, before in self.long:
            total = before + count
            # Grouped by key/value head as above: [1, kv_heads, rep * count, dim], no copied cache.
            ql = q[offset : offset + count].transpose(0, 1).reshape(1, kv_heads, rep * count, dim)
            cols = torch.arange(total, device=q.device)
            last = torch.arange(before, total, device=q.device)[:, None]
            mask = cols <= last
            if window is not None:
                mask &= cols > last - window
            mask = mask[None].expand(rep, count, total).reshape(1, 1, rep * count, total)
            ol = _attend(ql, key[row : row + 1, :, :total], value[row : row + 1, :, :total], mask, scale, softcap)
            out[offset : offset + count] = ol.reshape(kv_heads, rep, count, dim).permute(2, 0, 1, 3).reshape(
                count, heads, dim)
        return out[None]


class _Layer(CacheLayerMixin):
    """One layer's keys and values: a row per sequence, grown on demand; ``update`` writes the
    step's packed tokens where the layout says and hands the whole buffers to attention."""

    is_sliding = False
    is_compileable = False
    is_croppable = False

    def __init__(self, runtime: TransformersRuntime) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # transformers leaves CacheLayerMixin.__init__ unannotated
        self.runtime = runtime
        self.is_initialized = True
        self.kbuf: torch.Tensor | None = None
        self.vbuf: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    @property
    def is_ready(self) -> bool:
        """Buffers exist (shapes and dtype are known from a first forward pass)."""
        return self.kbuf is not None

    def fit(self, like: torch.Tensor | None = None) -> None:
        """Grow the buffers to the runtime's row and column capacity (copying what they hold)."""
        r = self.runtime
        like = like if like is not None else self.kbuf
        if like is None or (self.kbuf is not None and self.kbuf.shape[0] >= r.row_cap
                            and self.kbuf.shape[2] >= r.col_cap):
            return
        shape = (r.row_cap, like.shape[1], r.col_cap, like.shape[3])
        kbuf = torch.zeros(shape, dtype=like.dtype, device=like.device)
        vbuf = torch.zeros(shape, dtype=like.dtype, device=like.device)
        if self.kbuf is not None and self.vbuf is not None:
            rows, cols = min(self.kbuf.shape[0], r.row_cap), min(self.kbuf.shape[2], r.col_cap)
            kbuf[:rows, :, :cols] = self.kbuf[:rows, :, :cols]
            vbuf[:rows, :, :cols] = self.vbuf[:rows, :, :cols]
        self.kbuf, self.vbuf = kbuf, vbuf

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        self.fit(key_states)
        assert self.kbuf is not None and self.vbuf is not None
        layout = self.runtime.layout
        self.kbuf[layout.write_rows, :, layout.write_cols] = key_states[0].transpose(0, 1)
        self.vbuf[layout.write_rows, :, layout.write_cols] = value_states[0].transpose(0, 1)
        return self.kbuf, self.vbuf

    def put_row(self, row: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """A row's first columns from the prefix cache (``[kv_heads, n, head_dim]`` each)."""
        assert self.kbuf is not None and self.vbuf is not None
        self.kbuf[row, :, : keys.shape[1]] = keys
        self.vbuf[row, :, : values.shape[1]] = values

    def row_block(self, row: int, lo: int, hi: int) -> torch.Tensor:
        """``[2, kv_heads, hi - lo, head_dim]``: a copy of a row's keys and values over columns lo:hi."""
        assert self.kbuf is not None and self.vbuf is not None
        return torch.stack([self.kbuf[row, :, lo:hi], self.vbuf[row, :, lo:hi]])

    def move_row(self, source: int, target: int, cols: int) -> None:
        if self.kbuf is not None and self.vbuf is not None:
            self.kbuf[target, :, :cols] = self.kbuf[source, :, :cols]
            self.vbuf[target, :, :cols] = self.vbuf[source, :, :cols]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return query_length, 0

    def get_seq_length(self) -> int:
        return 0

    def get_max_length(self) -> int:
        return -1


def _packed_attention_for(original: str) -> str:
    """Register (once) an attention function that runs packed steps and defers to ``original``."""
    name = f"constrain-packed-{original}"
    with _register_lock:
        if name in ALL_ATTENTION_FUNCTIONS:
            return name
        fallback: Callable[..., Any] | None = ALL_ATTENTION_FUNCTIONS.get(original)

        def packed(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
            layout = kwargs.pop(_LAYOUT_KEYWORD, None)
            if layout is None:
                function = fallback or sys.modules[type(module).__module__].eager_attention_forward
                return function(module, query, key, value, attention_mask, **kwargs)  # type: ignore[no-any-return]
            return layout.attend(query, key, value, kwargs.get("scaling"), kwargs.get("sliding_window"),
                                 kwargs.get("softcap")), None

        AttentionInterface.register(name, packed)
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])
    return name


@dataclass
class _Row:
    """One sequence held by the runtime: its tokens so far, and its prompt's block digests."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    images: bool = False  # its prompt holds images: its keys are not its tokens' alone, never cached

    @property
    def length(self) -> int:
        return len(self.tokens)


class TransformersRuntime(Runtime):
    """A transformers causal LM behind the Runtime interface (CPU or accelerator).

    ``prefix_cache_bytes``: keys and values of past prompts kept for reuse (``prefix.py``).
    """

    def __init__(self, hf_model: Any, *, prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES) -> None:
        self.model = hf_model
        self.device = next(hf_model.parameters()).device
        self.vocab_size = int(hf_model.get_output_embeddings().weight.shape[0])
        config = hf_model.config
        self.context_length = int(getattr(config, "max_position_embeddings", 4096))
        original = getattr(config, "_attn_implementation", None) or "sdpa"
        if not original.startswith("constrain-packed-"):
            hf_model.set_attn_implementation(_packed_attention_for(original))
        self._keyword = "cache" if "cache" in _parameters(hf_model.forward) else "past_key_values"
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        self._layers = [_Layer(self) for _ in range(int(text.num_hidden_layers))]
        self._cache = Cache(layers=list(self._layers))
        self._rows: list[_Row] = []
        self._row_of: dict[int, int] = {}
        self.row_cap = 0
        self.col_cap = 0
        self.layout = _Layout(self.device)
        self.prefixes = PrefixCache(prefix_cache_bytes)
        self._dummy_mask = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=self.device)
        head = hf_model.get_output_embeddings()
        plain = isinstance(head, torch.nn.Linear) and head.bias is None
        self._head = head if plain and self.device.type == "cpu" else None
        if self._head is not None and "forward" not in vars(head):
            head.forward = _wide_forward(head)

    def eos_token_ids(self) -> set[int]:
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        return {value for value in (eos if isinstance(eos, list) else [eos]) if isinstance(value, int)}

    def memory(self) -> dict[str, int]:
        kv = sum(2 * layer.kbuf.numel() * layer.kbuf.element_size() for layer in self._layers if layer.kbuf is not None)
        return {"prefix_cache_bytes": self.prefixes.bytes, "kv_buffer_bytes": kv}

    def reset(self) -> None:
        self._rows.clear()
        self._row_of.clear()

    def length(self, seq_id: int) -> int:
        row = self._row_of.get(seq_id)
        return 0 if row is None else self._rows[row].length

    def drop(self, seq_id: int) -> None:
        row = self._row_of.pop(seq_id, None)
        if row is None:
            return
        last = len(self._rows) - 1
        if row != last:
            moved = self._rows[last]
            for layer in self._layers:
                layer.move_row(last, row, moved.length)
            self._rows[row] = moved
            self._row_of[moved.seq_id] = row
        self._rows.pop()

    def _add(self, seq_id: int) -> int:
        self._row_of[seq_id] = len(self._rows)
        self._rows.append(_Row(seq_id))
        return len(self._rows) - 1

    def start(self, seq_id: int, tokens: list[int], keep: int = 1, vision: dict[str, Any] | None = None) -> int:
        """A new sequence; the leading tokens found in the prefix cache are put in place at once,
        or with ``vision``, the prompt with its images prefilled by the model's own forward pass."""
        row = self._add(seq_id)
        if vision:
            return self._prefill_images(row, tokens[: len(tokens) - keep], vision)
        usable = max(0, len(tokens) - keep) // BLOCK
        if not usable or not self._layers[0].is_ready:
            return 0
        digests = block_digests(tokens[: usable * BLOCK])
        blocks = self.prefixes.lookup(digests)
        if not blocks:
            return 0
        held = len(blocks) * BLOCK
        self._grow(len(self._rows), held)
        stacked = torch.cat(blocks, dim=3)  # [layers, 2, kv_heads, held, head_dim]
        for index, layer in enumerate(self._layers):
            layer.put_row(row, stacked[index, 0], stacked[index, 1])
        state = self._rows[row]
        state.tokens = list(tokens[:held])
        state.digests = digests[: len(blocks)]
        self.prefixes.hits += held
        return held

    def _prefill_images(self, row: int, tokens: list[int], vision: dict[str, Any]) -> int:
        """A vision-language model merges image features into the prompt its own way (Idefics3,
        LLaVA, Gemma 3 each differ), so the prompt goes through its full forward pass once; its
        keys and values then fill the row, and decoding goes on in the packed steps."""
        from transformers import DynamicCache

        state = self._rows[row]
        state.images = True
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in vision.items()}
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
                             logits_to_keep=1, **{self._keyword: DynamicCache()}, **inputs)
        cache = out.past_key_values
        self._grow(len(self._rows), len(tokens))
        for layer, held in zip(self._layers, cache.layers, strict=True):
            layer.fit(held.keys)
            layer.put_row(row, held.keys[0], held.values[0])
        state.tokens = list(tokens)
        return len(tokens)

    def _grow(self, rows: int, cols: int) -> None:
        if rows > self.row_cap or cols > self.col_cap:
            self.row_cap = max(rows, self.row_cap if rows <= self.row_cap else 2 * self.row_cap, 1)
            self.col_cap = self.col_cap if cols <= self.col_cap else max(cols + 64, 2 * self.col_cap)
        for layer in self._layers:
            layer.fit()

    def step(self, feeds: list[Feed]) -> StepLogits:
        layout = self._plan(feeds)
        ids = torch.tensor([[t for f in feeds for t in f.tokens]], dtype=torch.long)
        keep: list[int] = []  # each feed's last position first, then the earlier ones
        offsets: list[int] = []
        offset = 0
        for feed in feeds:
            offsets.append(offset)
            offset += len(feed.tokens)
            keep.append(offset - 1)
        for feed, start in zip(feeds, offsets, strict=True):
            end = start + len(feed.tokens)
            keep.extend(range(end - feed.keep, end - 1))
        with self._wide_head():
            out = self.model(
                input_ids=ids.to(self.device),
                position_ids=layout.write_cols[None],
                attention_mask=self._dummy_mask,
                use_cache=True,
                logits_to_keep=torch.tensor(keep, device=self.device),
                **{self._keyword: self._cache, _LAYOUT_KEYWORD: layout},
            )
        self._remember(feeds)
        logits = out.logits[0]
        n = len(feeds)
        earlier: list[torch.Tensor | None] = []
        at = n
        for feed in feeds:
            if feed.keep > 1:
                earlier.append(logits[at : at + feed.keep - 1])
                at += feed.keep - 1
            else:
                earlier.append(None)
        return StepLogits(last=logits[:n], earlier=earlier)

    @contextlib.contextmanager
    def _wide_head(self) -> Iterator[None]:
        """On the CPU, the output projection of several positions as ``W @ x.T``: MKL's GEMM for
        ``x @ W.T`` with a tall 49k x 576 weight runs at a third of the memory bandwidth the
        transposed product gets (measured: 45 ms vs 26 ms for 16 positions). Same values up to
        rounding; only in this thread's runtime passes (other callers of the model keep its own)."""
        if self._head is None:
            yield
            return
        _WIDE.active = True
        try:
            yield
        finally:
            _WIDE.active = False

    def _remember(self, feeds: list[Feed]) -> None:
        """Record the fed tokens; keep the whole blocks of prompts (long feeds) for reuse."""
        for feed in feeds:
            row = self._row_of[feed.seq_id]
            state = self._rows[row]
            state.tokens.extend(feed.tokens)
            if len(feed.tokens) <= _PROMPT_FEED or self.prefixes.capacity_bytes <= 0 or state.images:
                continue
            self.prefixes.misses += len(feed.tokens)
            previous = state.digests[-1] if state.digests else b""
            for digest in block_digests(state.tokens, len(state.digests), previous):
                index = len(state.digests)
                state.digests.append(digest)
                if digest not in self.prefixes:
                    lo, hi = index * BLOCK, (index + 1) * BLOCK
                    self.prefixes.put(digest, torch.stack([layer.row_block(row, lo, hi) for layer in self._layers]))

    def _plan(self, feeds: list[Feed]) -> _Layout:
        """Rows for new sequences, room in the buffers, and the step's layout."""
        for feed in feeds:
            if feed.seq_id not in self._row_of:
                self._add(feed.seq_id)
        rows = len(self._rows)
        write_rows: list[int] = []
        write_cols: list[int] = []
        q_rows: list[int] = []
        q_cols: list[int] = []
        q_index: list[int] = []
        long: list[tuple[int, int, int, int]] = []
        befores: dict[int, int] = {}
        width, cols, offset, need_cols = 1, 1, 0, 0
        for feed in feeds:
            row = self._row_of[feed.seq_id]
            count, before = len(feed.tokens), self._rows[row].length
            write_rows.extend([row] * count)
            write_cols.extend(range(before, before + count))
            if count > _ALONE:
                long.append((row, offset, count, before))
            else:
                q_rows.extend([row] * count)
                q_cols.extend(range(count))
                q_index.extend(range(offset, offset + count))
                befores[row] = before
                width = max(width, count)
                cols = max(cols, before + count)
            need_cols = max(need_cols, before + count)
            offset += count
        self._grow(rows, max(need_cols, max(r.length for r in self._rows)))
        layout = _Layout(self.device)
        layout.rows, layout.width, layout.cols, layout.long = rows, width, cols, long
        layout.fast = not long and width == 1 and len(feeds) == rows and q_rows == list(range(rows))
        dev = self.device
        layout.write_rows = torch.tensor(write_rows, dtype=torch.long, device=dev)
        layout.write_cols = torch.tensor(write_cols, dtype=torch.long, device=dev)
        layout.q_rows = torch.tensor(q_rows, dtype=torch.long, device=dev)
        layout.q_cols = torch.tensor(q_cols, dtype=torch.long, device=dev)
        layout.q_index = torch.tensor(q_index, dtype=torch.long, device=dev)
        limit = torch.zeros(rows, width, dtype=torch.long)
        for row, before in befores.items():
            limit[row] = torch.arange(before, before + width)
        layout.limit = limit.to(dev)
        self.layout = layout
        return layout


_WIDE = threading.local()


def _wide_forward(head: torch.nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
    """The output projection, computed as ``W @ x.T`` for several positions while a runtime pass
    in this thread asks for it (``TransformersRuntime._wide_head``)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not getattr(_WIDE, "active", False) or x.dim() < 2 or x.shape[-2] < 2:
            return F.linear(x, head.weight)
        flat = x.reshape(-1, x.shape[-1])
        return (head.weight @ flat.T).T.reshape(*x.shape[:-1], head.weight.shape[0])

    return forward


def _parameters(function: Any) -> set[str]:
    import inspect

    return set(inspect.signature(function).parameters)
