"""Token ids -> text as it grows: never a split UTF-8 character, and stop strings held back and cut."""

from __future__ import annotations

from typing import Any


class Detokenizer:
    """Incremental detokenizer for one sequence; ``text`` is everything released or held so far."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.longest_stop = max((len(s) for s in stop), default=0)
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return text

    def push(self, ids: list[int]) -> str:
        """Add tokens; return the text that can be shown now."""
        self.ids.extend(ids)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return self._release()

    def _release(self) -> str:
        if not self.stop:
            out, self.emitted = self.text[self.emitted :], len(self.text)
            return out
        start = max(0, self.emitted - self.longest_stop)
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            cut = min(hits)
            out = self.text[self.emitted : cut]
            self.text, self.emitted, self.stopped = self.text[:cut], cut, True
            return out
        # Hold back the longest tail that could still grow into a stop sequence.
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), hold, -1):
                if self.text.endswith(s[:k]):
                    hold = k
                    break
        end = max(self.emitted, len(self.text) - hold)
        out, self.emitted = self.text[self.emitted : end], end
        return out

    def flush(self) -> str:
        """At the end: whatever was held back (a stop prefix that never completed, a partial char)."""
        if not self.stopped:
            rest = self._decode(self.ids[self.prefix_offset :])
            prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
            if len(rest) > len(prefix):
                self.text += rest[len(prefix) :]
                self.prefix_offset = self.read_offset = len(self.ids)
        out, self.emitted = self.text[self.emitted :], len(self.text)
        return out
