"""The llama.cpp runtime: a GGUF model run by llama.cpp's kernels (``llama-cpp-python``'s C API).

Only the forward pass moves here. The prompt is tokenized by constrain's tokenizer (read from
the same GGUF, checked to agree with llama.cpp's at load), and masks, sampling, logprobs, stop
strings and the budget closer stay in the decoding core, identical for every runtime.

One ``llama_batch`` per step carries every fed sequence, several tokens each (a prompt chunk, a
sampled token and the forced ones after it), and asks for logits only where the core needs
them. Each sequence runs in one of ``slots`` llama.cpp sequences with its own KV stream
(``kv_unified`` off: attention never reads the other sequences' cells). A freed slot keeps its
cells: the next prompt that starts with the same tokens (a shared system prompt, the same tool
list) reuses them, as ``llama-server``'s slots do.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from constrain.decoding.runtimes.base import Feed, Runtime, StepLogits
from constrain.errors import GenerationError, ModelLoadError

_log = logging.getLogger("constrain.llama_cpp")
# Tokens per llama_decode call; a step with more (several prompt chunks) takes several calls.
_BATCH_TOKENS = 512
# Tokens per forward pass inside one call. llama.cpp's CPU attention switches to another kernel
# (tiled, F32 queries) at 64 query rows of one sequence, and the two round differently (logits
# apart by 0.5 on the embedded model). Below 64 rows every position is computed by the same
# kernel however the prompt was cut: a prompt resumed from a slot's kept prefix, split into
# chunks, or run beside other requests gives the very logits it gives alone (same seed, same
# output), at about 15% of prompt speed.
_UBATCH_TOKENS = 48
# KV cells across all slots when not given, and the slots a model gets when its batch is not
# given: 8,192 tokens each (the embedded model's whole context; 1.5 GB of KV for it).
DEFAULT_KV_TOKENS = 65536
DEFAULT_SLOTS = 8
_GGML_LOG_ERROR = 4
_backend_lock = threading.Lock()
_backend_ready = False


def available() -> bool:
    """Whether ``llama-cpp-python`` is installed (``pip install constrain[llama-cpp]``)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def default_threads() -> int:
    """llama.cpp's threads when not given: every CPU this process may use but one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def _bindings() -> Any:
    """The C API, initialised once per process, with llama.cpp's log reduced to its errors."""
    global _backend_ready
    try:
        import llama_cpp.llama_cpp as ll
    except ImportError:
        raise ModelLoadError(
            "the llama.cpp runtime needs llama-cpp-python: pip install 'constrain[llama-cpp]' "
            "(it compiles llama.cpp, about 5 minutes on 2 cores)", param="runtime") from None
    with _backend_lock:
        if not _backend_ready:
            ll.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
            ll.llama_backend_init()
            _backend_ready = True
    return ll


def _log_message(level: int, text: bytes | None, _data: Any) -> None:
    if level == _GGML_LOG_ERROR and text:  # not CONT (5): the progress dots of a load
        _log.error(text.decode("utf-8", "replace").rstrip())


# Kept alive here for the process's life: llama.cpp holds the pointer.
_LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(_log_message)


@dataclass
class _Slot:
    """One llama.cpp sequence: the tokens its KV cells hold, and the constrain sequence using it."""

    index: int
    tokens: list[int] = field(default_factory=list)
    owner: int | None = None


class LlamaCppRuntime(Runtime):
    """A GGUF model in llama.cpp behind the Runtime interface (CPU).

    ``slots``: sequences held at once (the core's ``max_batch`` at most); ``kv_tokens``: KV cells
    over all slots, split evenly (each slot's share is the model's context length here);
    ``threads``: llama.cpp's threads (default: one less than the CPUs, at least one). llama.cpp's
    threads wait for each other at every operation, spinning: when one is descheduled, all
    wait. Leaving a core to the rest of the process (mask fills, sampling, the HTTP server)
    costs a little on an idle machine and saves a collapse on a busy one (measured on 2 cores
    under load: a step of one token took 840 ms with 2 threads, 120 ms with 1; RESULTS.md).
    """

    device = torch.device("cpu")

    def __init__(self, gguf: str | os.PathLike[str], *, slots: int, kv_tokens: int = DEFAULT_KV_TOKENS,
                 threads: int | None = None) -> None:
        ll = _bindings()
        self._ll = ll
        if threads is not None and threads < 1:
            raise ModelLoadError(f"`threads` must be at least 1, not {threads}", param="threads")
        if not 1 <= slots <= 256:
            raise ModelLoadError(f"the llama.cpp runtime holds 1 to 256 sequences at once, not {slots}", param="max_batch")
        model_params = ll.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self._model = ll.llama_model_load_from_file(str(Path(gguf)).encode(), model_params)
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load {gguf}", param="model")
        self.train_context = int(ll.llama_model_n_ctx_train(self._model))
        per_slot = max(256, min(self.train_context, kv_tokens // slots))
        params = ll.llama_context_default_params()
        params.n_ctx = per_slot * slots
        params.n_batch = _BATCH_TOKENS
        params.n_ubatch = _UBATCH_TOKENS
        params.n_seq_max = slots
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = threads or default_threads()
        params.no_perf = True
        self._ctx = ll.llama_init_from_model(self._model, params)
        if not self._ctx:
            ll.llama_model_free(self._model)
            raise ModelLoadError(f"llama.cpp could not make a context of {params.n_ctx} tokens for {gguf}",
                                 param="model")
        self.context_length = int(ll.llama_n_ctx_seq(self._ctx))
        self._memory = ll.llama_get_memory(self._ctx)
        heads = max(1, int(ll.llama_model_n_head(self._model)))
        kv_width = int(ll.llama_model_n_embd(self._model)) // heads * int(ll.llama_model_n_head_kv(self._model))
        # f16 keys and values, allocated whole at start
        self._kv_bytes = int(ll.llama_n_ctx(self._ctx)) * int(ll.llama_model_n_layer(self._model)) * kv_width * 2 * 2
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.vocab_size = int(ll.llama_vocab_n_tokens(self._vocab))
        self._batch = ll.llama_batch_init(_BATCH_TOKENS, 0, 1)
        self._slots = [_Slot(i) for i in range(slots)]
        self._slot_of: dict[int, _Slot] = {}
        self.reused_tokens = 0

    # ------------------------------------------------------------------ vocabulary

    def eos_token_ids(self) -> set[int]:
        """End-of-generation tokens the GGUF declares (EOS, and EOT where it has one)."""
        ids = {int(self._ll.llama_vocab_eos(self._vocab)), int(self._ll.llama_vocab_eot(self._vocab))}
        return {i for i in ids if i >= 0}

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's own tokenization (special tokens parsed, none added): the load-time check
        that it agrees with constrain's tokenizer, and tests."""
        data = text.encode("utf-8")
        room = len(data) + 16
        out = (self._ll.llama_token * room)()
        count = self._ll.llama_tokenize(self._vocab, data, len(data), out, room, False, True)
        if count < 0:
            raise GenerationError(f"llama.cpp could not tokenize {len(data)} bytes")
        return list(out[:count])

    def token_bytes(self, token: int) -> bytes:
        """The bytes llama.cpp writes for one token (special tokens as their text)."""
        room = 64
        while True:
            buf = ctypes.create_string_buffer(room)
            count = self._ll.llama_token_to_piece(self._vocab, token, buf, room, 0, True)
            if count >= 0:
                return buf.raw[:count]
            room = -count

    # ------------------------------------------------------------------ sequences

    def memory(self) -> dict[str, int]:
        return {"kv_buffer_bytes": self._kv_bytes}

    def length(self, seq_id: int) -> int:
        slot = self._slot_of.get(seq_id)
        return 0 if slot is None else len(slot.tokens)

    def start(self, seq_id: int, tokens: list[int], keep: int = 1, vision: dict[str, Any] | None = None) -> int:
        """A slot for a new sequence: the free one whose cells share the longest prefix with
        ``tokens`` (at most ``len(tokens) - keep``); its cells past that prefix are cleared."""
        if vision:
            raise GenerationError("the llama.cpp runtime takes no images: load the model with runtime='transformers'")
        usable = max(0, len(tokens) - keep)
        best: _Slot | None = None
        best_len = -1
        for slot in self._slots:
            if slot.owner is not None:
                continue
            shared = _common_prefix(slot.tokens, tokens, usable)
            if shared > best_len:
                best, best_len = slot, shared
        if best is None:
            raise GenerationError(f"the llama.cpp runtime holds {len(self._slots)} sequences at once; all are in use")
        self._take(best, seq_id, best_len)
        self.reused_tokens += best_len
        return best_len

    def _take(self, slot: _Slot, seq_id: int, keep_tokens: int) -> None:
        if keep_tokens < len(slot.tokens):
            self._ll.llama_memory_seq_rm(self._memory, slot.index, keep_tokens, -1)
            del slot.tokens[keep_tokens:]
        slot.owner = seq_id
        self._slot_of[seq_id] = slot

    def drop(self, seq_id: int) -> None:
        slot = self._slot_of.pop(seq_id, None)
        if slot is not None:
            slot.owner = None  # its cells stay, for the next prompt that starts the same way

    def reset(self) -> None:
        self._ll.llama_memory_clear(self._memory, True)
        self._slot_of.clear()
        for slot in self._slots:
            slot.owner = None
            slot.tokens.clear()

    # ------------------------------------------------------------------ the forward pass

    def step(self, feeds: list[Feed]) -> StepLogits:
        for feed in feeds:
            if feed.seq_id not in self._slot_of:
                self.start(feed.seq_id, [], keep=0)
        # (feed index, position in the feed) of every logits row asked for, in batch order.
        wanted: list[tuple[int, int]] = []
        rows: list[np.ndarray] = []
        # In slot order: llama.cpp cuts a batch into forward passes of consecutive sequence ids
        # (one KV stream each), so 8 rows in slot order are one pass and in any other order up
        # to 8 (measured: 67 against 104 ms for a step of 8 rows on 1 thread).
        order = sorted(range(len(feeds)), key=lambda i: self._slot_of[feeds[i].seq_id].index)
        entries = [(i, j) for i in order for j in range(len(feeds[i].tokens))]
        for start in range(0, len(entries), _BATCH_TOKENS):
            chunk = entries[start : start + _BATCH_TOKENS]
            asked = self._fill_batch(feeds, chunk)
            wanted.extend(asked)
            if asked:
                rows.append(self._decode(len(chunk), len(asked)))
            else:
                self._decode(len(chunk), 0)
        for feed in feeds:
            self._slot_of[feed.seq_id].tokens.extend(feed.tokens)
        table = torch.from_numpy(np.concatenate(rows) if len(rows) > 1 else rows[0])
        where = {key: n for n, key in enumerate(wanted)}
        last = table[[where[(i, len(feed.tokens) - 1)] for i, feed in enumerate(feeds)]]
        earlier: list[torch.Tensor | None] = []
        for i, feed in enumerate(feeds):
            count = len(feed.tokens)
            earlier.append(table[[where[(i, j)] for j in range(count - feed.keep, count - 1)]]
                           if feed.keep > 1 else None)
        return StepLogits(last=last, earlier=earlier)

    def _fill_batch(self, feeds: list[Feed], chunk: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Write one llama_batch; returns the entries whose logits it asks for, in order."""
        batch = self._batch
        asked: list[tuple[int, int]] = []
        for n, (i, j) in enumerate(chunk):
            feed = feeds[i]
            slot = self._slot_of[feed.seq_id]
            batch.token[n] = feed.tokens[j]
            batch.pos[n] = len(slot.tokens) + j
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.index
            count = len(feed.tokens)
            want = j >= count - max(1, feed.keep)
            batch.logits[n] = 1 if want else 0
            if want:
                asked.append((i, j))
        batch.n_tokens = len(chunk)
        return asked

    def _decode(self, tokens: int, outputs: int) -> np.ndarray:
        code = self._ll.llama_decode(self._ctx, self._batch)
        if code != 0:
            raise GenerationError(f"llama.cpp's decode failed (code {code}) on a batch of {tokens} tokens")
        if not outputs:
            return np.empty((0, self.vocab_size), dtype=np.float32)
        pointer = self._ll.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(pointer, shape=(outputs, self.vocab_size)).copy()

    def close(self) -> None:
        """Free llama.cpp's context and weights (also done when the runtime is collected)."""
        ll = self._ll
        if getattr(self, "_ctx", None):
            ll.llama_batch_free(self._batch)
            ll.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            ll.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


def _common_prefix(held: list[int], tokens: list[int], limit: int) -> int:
    n = min(len(held), limit)
    i = 0
    while i < n and held[i] == tokens[i]:
        i += 1
    return i
