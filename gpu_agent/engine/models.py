"""Base models: where they come from (built-in tiny test models, a local folder, a hub id), which device and
dtype they run on, and which family (SD 1.x, SD 2.x, SDXL) a loaded pipeline belongs to."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch

from gpu_agent.engine.model_source import download_command, resolve_model_source
from gpu_agent.engine.tiny import TINY_MODELS, build_tiny_pipeline

ModelFamily = Literal["sd1", "sd2", "sdxl"]


class BaseModelError(RuntimeError):
    """The base model cannot be loaded; the message says why and what to do."""


def pick_device(setting: str | torch.device = "auto") -> torch.device:
    """The torch device for a ``device`` setting: "auto" takes CUDA, then Apple's MPS, then the CPU."""
    if isinstance(setting, torch.device):
        setting = str(setting)
    kind = setting.split(":")[0]
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BaseModelError(f"device {setting!r} was asked for but torch sees no CUDA GPU on this machine")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise BaseModelError(
            f"device {setting!r} was asked for but Apple's MPS backend is not available here"
        )
    if kind not in ("cpu", "cuda", "mps"):
        raise BaseModelError(f"unknown device {setting!r}: use auto, cpu, cuda (or cuda:N) or mps")
    return torch.device(setting)


def pick_dtype(device: torch.device) -> torch.dtype:
    """Weights dtype for a device: half precision on GPUs (bf16 where CUDA supports it), bf16 on CPUs that
    compute it natively, fp32 on other CPUs.

    bf16 has fp32's exponent range, so the SDXL VAE cannot overflow to NaN in it as it does in fp16; older
    CUDA cards without bf16 get fp16. A CPU with AVX512-BF16/AMX renders a full-size SD-1.5 image in half the
    time in bf16 (7.3 s vs 14.6 s at 256 px, 4 steps, 2026-11-26); other CPUs emulate it slower than fp32.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes in bf16 natively (AVX512-BF16 or AMX, e.g. Xeon Cooper Lake and later,
    AMD Zen 4 and later): there a bf16 training step takes about half the time of an fp32 one (docs/TRAINING.md).
    Elsewhere torch emulates bf16 more slowly than it computes fp32."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def is_test_model(pipe: Any) -> bool:
    """True for the built-in tiny random pipelines, which draw noise."""
    return bool(getattr(pipe, "is_test_model", False))


def model_family(pipe: Any) -> ModelFamily:
    """ "sdxl" (two text encoders, size/crop conditioning), "sd2" (OpenCLIP-H, 1024-wide) or "sd1"."""
    unet = pipe.unet
    if (
        getattr(pipe, "text_encoder_2", None) is not None
        or unet.config.get("addition_embed_type") == "text_time"
    ):
        return "sdxl"
    if unet.config.get("cross_attention_dim") == 1024:
        return "sd2"
    return "sd1"


def load_base_pipeline(
    base_model: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    img2img: bool = False,
) -> Any:
    """Load the text-to-image (or, with ``img2img``, image-to-image) pipeline of ``base_model``.

    ``base_model`` is "tiny-sd"/"tiny-sdxl" (built-in test models), a local diffusers folder, or a Hugging
    Face hub id looked up in ``cache_dir``. ``dtype`` None means :func:`pick_dtype`. Raises BaseModelError
    with a message that names the model and says what to do.
    """
    device = torch.device(device)
    dtype = dtype or pick_dtype(device)
    if base_model in TINY_MODELS:
        pipe = build_tiny_pipeline(base_model, cache_dir=cache_dir)
    else:
        pipe = _from_pretrained(base_model, dtype=dtype, cache_dir=cache_dir)
    pipe.is_test_model = is_test_model(pipe)
    pipe.photogen_base_model = base_model
    pipe.to(device)
    if pipe.unet.dtype != dtype:
        pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    if img2img:
        from diffusers import AutoPipelineForImage2Image

        # from_pipe shares the modules: no second copy of any weight.
        i2i = AutoPipelineForImage2Image.from_pipe(pipe)
        i2i.is_test_model, i2i.photogen_base_model = pipe.is_test_model, base_model
        i2i.set_progress_bar_config(disable=True)
        return i2i
    return pipe


def _from_pretrained(base_model: str, *, dtype: torch.dtype, cache_dir: str | os.PathLike[str] | None) -> Any:
    from diffusers import DiffusionPipeline

    source = resolve_model_source(base_model)  # the rule `photogen doctor` checks with
    if source.kind in ("folder", "file"):
        path = Path(base_model).expanduser()
        if not path.exists():
            raise BaseModelError(f"base model {base_model!r}: no such file or folder on this machine")
        if not (path.is_dir() and (path / "model_index.json").is_file()):
            raise BaseModelError(
                f"base model {base_model!r} is not a diffusers pipeline folder (it has no model_index.json); "
                "convert single-file checkpoints with diffusers' conversion scripts first"
            )
        return _load_folder(path, base_model, dtype)

    if source.kind != "hub":
        raise BaseModelError(
            f"base model {base_model!r} is neither a built-in ({', '.join(TINY_MODELS)}), a local folder, "
            "nor a Hugging Face hub id like 'org/name'"
        )
    from huggingface_hub import constants

    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        # The files first (from_pretrained would fetch the same ones), then the local folder's load.
        folder = DiffusionPipeline.download(
            base_model,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=offline,
        )
    except Exception as exc:
        where = f"the model cache {cache_dir}" if cache_dir else "the Hugging Face cache"
        if offline:
            raise BaseModelError(
                f"base model {base_model!r} is not in {where} and this machine is offline "
                "(HF_HUB_OFFLINE=1): "
                "it must be downloaded on a machine with internet "
                f"(`{download_command(base_model, str(cache_dir or '<cache>'))}`) "
                "and the cache copied here"
            ) from exc
        raise BaseModelError(
            f"base model {base_model!r} could not be fetched from the Hugging Face hub into {where} "
            f"({type(exc).__name__}); it must be downloaded on a machine with internet, or the id is wrong"
        ) from exc
    return _load_folder(Path(folder), base_model, dtype)


def _load_folder(path: Path, base_model: str, dtype: torch.dtype) -> Any:
    from diffusers import DiffusionPipeline
    from safetensors import SafetensorError

    from gpu_agent.engine.weights import load_unet

    try:
        # A UNet stored wider than dtype (fp32 files, bf16/fp16 run) is read slice by slice: diffusers' own
        # cast would hold the whole wide file mapped beside the narrow copy.
        unet = load_unet(path, dtype)
        components = {} if unet is None else {"unet": unet}
        return DiffusionPipeline.from_pretrained(str(path), dtype=dtype, local_files_only=True, **components)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        # SafetensorError: a truncated or damaged weights file (an interrupted download or copy)
        raise BaseModelError(f"base model {base_model!r} could not be loaded from disk: {exc}") from exc
