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

import sys
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from constrain.decoding.runtimes.base import Feed, Runtime, StepLogits

# A sequence feeding more tokens than this in a step (a prompt) attends on its own.
_SHORT = 16
_LAYOUT_KEYWORD = "constrain_layout"
_register_lock = threading.Lock()


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float | None,
            softcap: float | None, causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention; with a logit soft-cap (Gemma 2) written out."""
    if not softcap:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, is_causal=causal)
    scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else q.shape[-1] ** -0.5)
    scores = torch.tanh(scores / softcap) * softcap
    if causal:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril(k.shape[-2] - q.shape[-2])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


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
            ql = q[offset : offset + count].transpose(0, 1)[None]  # [1, heads, count, dim]
            kl = key[row, :, :total].repeat_interleave(rep, dim=0)[None]
            vl = value[row, :, :total].repeat_interleave(rep, dim=0)[None]
            mask = None
            if before or window is not None:
                cols = torch.arange(total, device=q.device)
                last = torch.arange(before, total, device=q.device)[:, None]
                mask = cols <= last
                if window is not None:
                    mask &= cols > last - window
            ol = _attend(ql, kl, vl, mask, scale, softcap, causal=mask is None)
            out[offset : offset + count] = ol[0].transpose(0, 1)
        return out[None]


class _Layer(CacheLayerMixin):
    """One layer's keys and values: a row per sequence, grown on demand; ``update`` writes the
    step's packed tokens where the layout says and hands the whole buffers to attention."""

    is_sliding = False
    is_compileable = False
    is_croppable = False

    def __init__(self, runtime: TransformersRuntime) -> None:
        super().__init__()
        self.runtime = runtime
        self.is_initialized = True
        self.kbuf: torch.Tensor | None = None
        self.vbuf: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    def _fit(self, like: torch.Tensor) -> None:
        r = self.runtime
        if self.kbuf is not None and self.kbuf.shape[0] >= r.row_cap and self.kbuf.shape[2] >= r.col_cap:
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
        self._fit(key_states)
        assert self.kbuf is not None and self.vbuf is not None
        layout = self.runtime.layout
        self.kbuf[layout.write_rows, :, layout.write_cols] = key_states[0].transpose(0, 1)
        self.vbuf[layout.write_rows, :, layout.write_cols] = value_states[0].transpose(0, 1)
        return self.kbuf, self.vbuf

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
                function = fallback or sys.modules[type(module).__module__].eager_attention_forward  # type: ignore[attr-defined]
                return function(module, query, key, value, attention_mask, **kwargs)  # type: ignore[no-any-return]
            return layout.attend(query, key, value, kwargs.get("scaling"), kwargs.get("sliding_window"),
                                 kwargs.get("softcap")), None

        AttentionInterface.register(name, packed)
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])
    return name


class TransformersRuntime(Runtime):
    """A transformers causal LM behind the Runtime interface (CPU or accelerator)."""

    def __init__(self, hf_model: Any) -> None:
        self.model = hf_model
        self.device = next(hf_model.parameters()).device
        self.vocab_size = int(hf_model.get_output_embeddings().weight.shape[0])
        config = hf_model.config
        original = getattr(config, "_attn_implementation", None) or "sdpa"
        if not original.startswith("constrain-packed-"):
            hf_model.set_attn_implementation(_packed_attention_for(original))
        self._keyword = "cache" if "cache" in _parameters(hf_model.forward) else "past_key_values"
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        self._layers = [_Layer(self) for _ in range(int(text.num_hidden_layers))]
        self._cache = Cache(layers=list(self._layers))
        self._row_of: dict[int, int] = {}
        self._ids: list[int] = []  # sequence id of each row
        self._lengths: list[int] = []  # tokens each row holds
        self.row_cap = 0
        self.col_cap = 0
        self.layout = _Layout(self.device)
        self._dummy_mask = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=self.device)

    def reset(self) -> None:
        self._row_of.clear()
        self._ids.clear()
        self._lengths.clear()

    def length(self, seq_id: int) -> int:
        row = self._row_of.get(seq_id)
        return 0 if row is None else self._lengths[row]

    def drop(self, seq_id: int) -> None:
        row = self._row_of.pop(seq_id, None)
        if row is None:
            return
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            for layer in self._layers:
                layer.move_row(last, row, self._lengths[last])
            self._ids[row], self._lengths[row] = moved, self._lengths[last]
            self._row_of[moved] = row
        self._ids.pop()
        self._lengths.pop()

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
        out = self.model(
            input_ids=ids.to(self.device),
            position_ids=layout.write_cols[None],
            attention_mask=self._dummy_mask,
            use_cache=True,
            logits_to_keep=torch.tensor(keep, device=self.device),
            **{self._keyword: self._cache, _LAYOUT_KEYWORD: layout},
        )
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

    def _plan(self, feeds: list[Feed]) -> _Layout:
        """Rows for new sequences, room in the buffers, and the step's layout."""
        for feed in feeds:
            if feed.seq_id not in self._row_of:
                self._row_of[feed.seq_id] = len(self._ids)
                self._ids.append(feed.seq_id)
                self._lengths.append(0)
        rows = len(self._ids)
        write_rows: list[int] = []
        write_cols: list[int] = []
        q_rows: list[int] = []
        q_cols: list[int] = []
        q_index: list[int] = []
        long: list[tuple[int, int, int, int]] = []
        befores: dict[int, int] = {}
        width, cols, offset = 1, 1, 0
        for feed in feeds:
            row = self._row_of[feed.seq_id]
            count, before = len(feed.tokens), self._lengths[row]
            write_rows.extend([row] * count)
            write_cols.extend(range(before, before + count))
            if count > _SHORT:
                long.append((row, offset, count, before))
            else:
                q_rows.extend([row] * count)
                q_cols.extend(range(count))
                q_index.extend(range(offset, offset + count))
                befores[row] = before
                width = max(width, count)
                cols = max(cols, before + count)
            self._lengths[row] = before + count
            offset += count
        need_cols = max(self._lengths)
        if rows > self.row_cap or need_cols > self.col_cap:
            self.row_cap = max(rows, self.row_cap if rows <= self.row_cap else 2 * self.row_cap, 1)
            self.col_cap = self.col_cap if need_cols <= self.col_cap else max(need_cols + 64, 2 * self.col_cap)
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


def _parameters(function: Any) -> set[str]:
    import inspect

    return set(inspect.signature(function).parameters)
