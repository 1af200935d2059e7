"""Loading: the embedded GGUF is found without importing its package, converted once, then cached."""

from __future__ import annotations

import sys

import pytest

from constrain import loading
from constrain.errors import ModelLoadError


def test_embedded_gguf_is_found_without_importing_its_package():
    path = loading.embedded_gguf_path()
    assert path.suffix == ".gguf" and path.is_file()
    assert loading.EMBEDDED_PACKAGE not in sys.modules


def test_conversion_is_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("CONSTRAIN_CACHE_DIR", str(tmp_path))
    converted = []
    real = loading._convert_gguf
    monkeypatch.setattr(loading, "_convert_gguf", lambda *a: (converted.append(a), real(*a)))
    name, first, tokenizer = loading.load_weights(None)
    assert converted and name == loading.EMBEDDED_NAME
    assert list((tmp_path / "models").glob("*/config.json"))
    converted.clear()
    _, second, _ = loading.load_weights(None)
    assert not converted  # read from the cache, no second conversion
    assert first.config.vocab_size == second.config.vocab_size == len(tokenizer)
    # A GGUF given by path shares that cache; a local Hugging Face folder loads as it is.
    name, _, _ = loading.load_weights(str(loading.embedded_gguf_path()))
    assert not converted and name == loading.embedded_gguf_path().stem
    folder = next((tmp_path / "models").glob("*/config.json")).parent
    name, third, _ = loading.load_weights(folder)
    assert name == folder.name and third.config.vocab_size == first.config.vocab_size


@pytest.mark.parametrize("model", ["/no/such/path", __file__])
def test_bad_model_path_is_a_clear_error(model):
    with pytest.raises(ModelLoadError) as info:
        loading.resolve(model)
    assert info.value.param == "model" and "never downloads" in str(info.value)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        loading.resolve(tmp_path)
