"""ConstraintLogitsProcessor: the same masks for users of ``model.generate()``."""

from __future__ import annotations

import json

import jsonschema
import pytest
from transformers import LogitsProcessorList

import constrain

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "population": {"type": "integer", "minimum": 0}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def _prompt_ids(model, text: str):
    prompt = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    return model.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]


def test_generate_with_the_processor_yields_schema_valid_json(model):
    processor = constrain.ConstraintLogitsProcessor({"type": "json", "value": SCHEMA}, model.tokenizer)
    ids = _prompt_ids(model, "Name a big city and its population, as JSON.")
    out = model.hf_model.generate(
        ids, logits_processor=LogitsProcessorList([processor]), max_new_tokens=60, do_sample=False
    )
    text = model.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_processor_accepts_a_compiled_constraint_and_samples(model):
    compiled = constrain.compile_constraint({"type": "regex", "value": r"[A-Z][a-z]{2,8}-\d{3}"}, model.tokenizer)
    ids = _prompt_ids(model, "Invent a product code.")
    processor = constrain.ConstraintLogitsProcessor(compiled)
    out = model.hf_model.generate(
        ids, logits_processor=[processor], max_new_tokens=20, do_sample=True, temperature=1.0, top_k=0
    )
    text = model.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    import re

    assert re.fullmatch(r"[A-Z][a-z]{2,8}-[0-9]{3}", text), text


def test_processor_needs_a_tokenizer_to_compile():
    with pytest.raises(ValueError, match="tokenizer"):
        constrain.ConstraintLogitsProcessor({"type": "json_object"})
