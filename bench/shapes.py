"""Base models for the benchmarks: full-size SD-1.5 and SDXL shapes with random weights, or the tiny test models.

Built from the published config values (nothing is downloaded) and saved once to a temporary folder, so every
worker process loads them as the agent loads a real base model. ``model_path(name)`` gives what
``load_base_pipeline`` and the Renderer take: "tiny-sd" / "tiny-sdxl" as they are, "sd15" / "sdxl" as the folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

FULL = ("sd15", "sdxl")
TINY = {"sd15": "tiny-sd", "sdxl": "tiny-sdxl"}  # --dry: the tiny model of the same family
ROOT = Path(tempfile.gettempdir())
FOLDERS = {"sd15": ROOT / "photogen-bench-sd15-random", "sdxl": ROOT / "photogen-bench-sdxl-random"}


def model_path(name: str) -> str:
    """The base model to load for ``name`` (building a full-size one first if it is not on disk yet)."""
    if name not in FULL:
        return name
    folder = FOLDERS[name]
    if not (folder / "model_index.json").is_file():
        pipe = sd15_random() if name == "sd15" else sdxl_random()
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        pipe.save_pretrained(tmp)
        os.replace(tmp, folder)
    return str(folder)


def _vae(sample_size: int, scaling_factor: float) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
    )


def _clip(hidden: int, layers: int, heads: int, intermediate: int, act: str, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        hidden_act=act,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        **({"projection_dim": projection} if projection else {}),
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def sd15_random() -> Any:
    """SD-1.5's shapes: UNet 860M, VAE 84M, CLIP ViT-L/14 text encoder 123M; random weights."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from gpu_agent.engine.tiny import _scheduler, tiny_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    )
    return StableDiffusionPipeline(
        vae=_vae(512, 0.18215),
        text_encoder=_clip(768, 12, 12, 3072, "quick_gelu"),
        tokenizer=tiny_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sdxl_random() -> Any:
    """SDXL base 1.0's shapes: UNet 2.6B (transformer depths 1/2/10, 2048-wide cross-attention, text-time
    conditioning), the SDXL VAE, CLIP ViT-L and OpenCLIP ViT-bigG text encoders; random weights, kept in bf16 on
    disk (a 2.6B fp32 UNet is 10 GB to write)."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    from gpu_agent.engine.tiny import _scheduler, tiny_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=128,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(1024, 0.13025),
        text_encoder=_clip(768, 12, 12, 3072, "quick_gelu"),
        text_encoder_2=_clip(1280, 32, 20, 5120, "gelu", projection=1280),
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tiny_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True,
    )
    return pipe.to(dtype=torch.bfloat16)
