"""The budget closer's two pieces: the nesting scanner and the closing-token sets."""

from __future__ import annotations

import torch

from constrain.decoding.budget import BudgetCloser, Nesting, closer_masks
from constrain.vocab import Vocabulary


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
    in_string, outside, commas = closer_masks(Vocabulary(tokenizer), len(tokenizer), eos)
    assert {texts_ for texts_ in (tokenizer.decode([i]) for i in commas.nonzero().flatten().tolist())} == {","}
    texts = {i: tokenizer.decode([i]) for i in range(len(tokenizer))}
    assert in_string[tokenizer.eos_token_id] and outside[tokenizer.eos_token_id]
    assert {texts[i] for i in outside.nonzero().flatten().tolist() if i not in eos} >= {"]", "}"}
    assert all(set(texts[i]) <= set("]}") for i in outside.nonzero().flatten().tolist() if i not in eos)
    assert all(texts[i].startswith('"') for i in in_string.nonzero().flatten().tolist() if i not in eos)


def test_closer_waits_for_the_end_of_the_budget_then_narrows(tokenizer):
    vocab = len(tokenizer)
    closer = BudgetCloser(Vocabulary(tokenizer), vocab, {tokenizer.eos_token_id}, max_tokens=100)
    allowed = torch.ones(vocab, dtype=torch.bool)
    assert torch.equal(closer.narrow(allowed, '{"a":"xyz', generated=50), allowed)  # plenty left
    narrowed = closer.narrow(allowed, '{"a":"xyz', generated=95)
    assert 0 < int(narrowed.sum()) < vocab and closer.narrowed
    quote = tokenizer.encode('"', add_special_tokens=False)[0]
    assert narrowed[quote]
    # Once closing, it stays closing: a closed string must not leave room for a new one.
    after = closer.narrow(allowed, '{"a":"xyz"', generated=96)
    assert not after[quote] and after[tokenizer.encode("}", add_special_tokens=False)[0]]


EMAIL = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30},
                                          "email": {"type": "string", "format": "email"}},
         "required": ["name", "email"], "additionalProperties": False}


def test_shortest_completion_finishes_an_email_and_leaves_the_matcher_as_it_was(model):
    import numpy as np

    from constrain.decoding.budget import char_tokens, shortest_completion

    compiled = model.compile({"type": "json", "value": EMAIL})
    matcher = compiled.matcher()
    prefix = '{"name":"Ann","email":"ann1234567'
    for token in model.tokenizer.encode(prefix, add_special_tokens=False):
        assert matcher.consume(token)
    words = (compiled.vocab_size + 31) // 32
    before, after = np.zeros(words, np.int32), np.zeros(words, np.int32)
    matcher.fill_bitmask(before)
    quote = model.tokenizer.encode('"', add_special_tokens=False)[0]
    assert not (int(before.view(np.uint32)[quote >> 5]) >> (quote & 31)) & 1  # no closing yet: it needs @...
    path = shortest_completion(matcher, char_tokens(compiled.vocabulary, compiled.vocab_size), words, 20)
    matcher.fill_bitmask(after)
    assert np.array_equal(before, after)  # the search rolled everything back
    assert path is not None and len(path) <= 6  # e.g. '@', '0', '"', '}'
    for token in path:
        assert matcher.consume(token)
    assert matcher.is_accepting()
    text = prefix + model.tokenizer.decode(path)
    compiled.check_output(text)
    # A pattern with a count is searched level by level, not merged away.
    counted = model.compile({"type": "regex", "value": r"[0-9]{6}-[a-z]{2}"}).matcher()
    for token in model.tokenizer.encode("12", add_special_tokens=False):
        assert counted.consume(token)
    path = shortest_completion(counted, char_tokens(compiled.vocabulary, compiled.vocab_size), words, 20)
    assert path is not None and len(path) == 7


def test_budget_ends_email_answers_complete_and_valid(model):
    """A small model loops on digits inside an email: with the budget nearly spent, the closer
    follows the shortest completion the format allows (``@`` and a domain), so nothing is cut."""
    import json

    from constrain.schema import validate_instance

    ask = "Give the name and the email address of customer 1234567890123456789 (it starts with the digits)."
    requests = [{"messages": [{"role": "user", "content": ask}], "response_format": {"type": "json", "value": EMAIL},
                 "max_tokens": 36, "temperature": 1.0, "seed": seed} for seed in range(12)]
    for result in model.batch(requests):
        choice = result.choices[0]
        value = json.loads(choice.message.content)  # never cut mid-string
        assert validate_instance(json.dumps(EMAIL), value) is None, choice.message.content
        assert "@" in value["email"]
        assert result.usage.completion_tokens <= 36
