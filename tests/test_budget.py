"""The budget closer's two pieces: the nesting scanner and the closing-token sets."""

from __future__ import annotations

import torch

from constrain.decoding.budget import BudgetCloser, Nesting, closer_masks


def test_nesting_follows_strings_escapes_and_brackets():
    nesting = Nesting()
    text = '<tool_call>[{"a":"x]\\"}","b":[1,{'
    nesting.update(text)
    assert (nesting.depth, nesting.in_string) == (4, False)
    nesting.update(text + '"c')
    assert nesting.open == 5 and nesting.in_string
    nesting.update(text + '"c":2}]}]')
    assert nesting.open == 0


def test_closers_in_and_out_of_strings(tokenizer):
    eos = {tokenizer.eos_token_id}
    in_string, outside, commas = closer_masks(tokenizer, len(tokenizer), eos)
    assert {texts_ for texts_ in (tokenizer.decode([i]) for i in commas.nonzero().flatten().tolist())} == {","}
    texts = {i: tokenizer.decode([i]) for i in range(len(tokenizer))}
    assert in_string[tokenizer.eos_token_id] and outside[tokenizer.eos_token_id]
    assert {texts[i] for i in outside.nonzero().flatten().tolist() if i not in eos} >= {"]", "}"}
    assert all(set(texts[i]) <= set("]}") for i in outside.nonzero().flatten().tolist() if i not in eos)
    assert all(texts[i].startswith('"') for i in in_string.nonzero().flatten().tolist() if i not in eos)


def test_closer_waits_for_the_end_of_the_budget_then_narrows(tokenizer):
    vocab = len(tokenizer)
    closer = BudgetCloser(tokenizer, vocab, {tokenizer.eos_token_id}, max_tokens=100)
    allowed = torch.ones(vocab, dtype=torch.bool)
    assert torch.equal(closer.narrow(allowed, '{"a":"xyz', generated=50), allowed)  # plenty left
    narrowed = closer.narrow(allowed, '{"a":"xyz', generated=95)
    assert 0 < int(narrowed.sum()) < vocab and closer.narrowed
    quote = tokenizer.encode('"', add_special_tokens=False)[0]
    assert narrowed[quote]
    # Once closing, it stays closing: a closed string must not leave room for a new one.
    after = closer.narrow(allowed, '{"a":"xyz"', generated=96)
    assert not after[quote] and after[tokenizer.encode("}", add_special_tokens=False)[0]]
