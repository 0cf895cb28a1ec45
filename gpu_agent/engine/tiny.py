"""Tiny randomly initialised Stable Diffusion pipelines: TEST MODELS THAT DRAW NOISE.

They have the shapes of the real families (SD 1.x: one CLIP text encoder; SDXL: two text encoders, pooled
embeddings and size/crop time ids) so every code path of training and rendering runs offline, in seconds, on a
CPU. Nothing is downloaded: the tokenizer's vocabulary and merges are written here. The weights are random, so
what they render is noise; every pipeline they make carries ``is_test_model = True`` and a marker file on
disk.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from gpu_agent.engine.model_source import TINY_MODELS  # the names, shared with photogen doctor

MARKER_FILE = "PHOTOGEN_TEST_MODEL.json"
# Bump when a config below changes, so a cache built from an older layout is never loaded.
LAYOUT_VERSION = 1

# Words that get whole-word tokens, so test prompts tokenise to few tokens; any other text still tokenises
# (byte-level fallback), it just takes more tokens.
_WORDS = (
    "a",
    "an",
    "of",
    "in",
    "the",
    "photo",
    "portrait",
    "headshot",
    "picture",
    "sks",
    "ohwx",
    "zwx",
    "man",
    "woman",
    "person",
    "face",
    "front",
    "eiffel",
    "tower",
    "rome",
    "kremlin",
    "professional",
    "studio",
    "blurry",
    "ugly",
    "lowres",
    "cartoon",
    "dusk",
    "at",
    "and",
    "with",
    "light",
    "high",
    "quality",
)


def is_tiny(base_model: str) -> bool:
    return base_model in TINY_MODELS


def _byte_alphabet() -> list[str]:
    # The printable stand-ins byte-level BPE uses for the 256 byte values (GPT-2's table); the tokenizers
    # library owns the same table, and this keeps the vocabulary complete so no text maps to <unk>.
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _byte_alphabet():
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        # Merge left to right: "p"+"h" -> "ph", "ph"+"o" -> "pho", ... the last merge takes the "</w>" piece.
        pieces = [*word[:-1], word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            pair = (left, right)
            left = left + right
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(left, len(vocab))
    return vocab, merges


def tiny_tokenizer() -> Any:
    """A CLIP tokenizer over a locally written byte-level vocabulary (77 tokens long, like CLIP's)."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _text_config(projection_dim: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    vocab_size = len(_vocab_and_merges()[0])
    extra = {"projection_dim": projection_dim} if projection_dim else {}
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_act="gelu",
        **extra,
    )


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        sample_size=64,
    )


def _scheduler() -> Any:
    from diffusers import DPMSolverMultistepScheduler

    # The noise schedule of SD 1.x/SDXL, so training and sampling code sees real timestep maths.
    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type="epsilon",
        steps_offset=1,
    )


def _build_sd() -> Any:
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        tokenizer=tiny_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl() -> Any:
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    time_embed_dim, pooled_dim = 8, 32
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=8,
        # SDXL conditioning: both encoders' hidden states side by side (32 + 32), plus the pooled embedding
        # and six size/crop numbers, each embedded in time_embed_dim channels.
        cross_attention_dim=64,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + pooled_dim,
        transformer_layers_per_block=1,
    )
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(projection_dim=pooled_dim)),
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tiny_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True,
    )


def build_tiny_pipeline(name: str, *, seed: int = 0, cache_dir: str | os.PathLike[str] | None = None) -> Any:
    """The tiny test pipeline ``name`` ("tiny-sd" or "tiny-sdxl"), its random weights drawn from ``seed``.

    The same name and seed give the same weights on every machine. With ``cache_dir`` the pipeline is saved
    there once (atomically) and later calls load it from disk instead of building it.
    """
    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {name!r}; the tiny test models are {', '.join(TINY_MODELS)}")
    if cache_dir is not None:
        target = Path(cache_dir) / "tiny" / f"{name}-seed{seed}-v{LAYOUT_VERSION}"
        if (target / MARKER_FILE).is_file():
            return _mark(_pipeline_class(name).from_pretrained(str(target), local_files_only=True), name)
    # fork_rng keeps the caller's global RNG untouched: building a test model must not shift anyone's seeds.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _build_sd() if name == "tiny-sd" else _build_sdxl()
    # from_pretrained hands out modules in eval mode; a freshly built one must behave the same.
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    if cache_dir is not None:
        _save_atomically(pipe, target, name, seed)
    return _mark(pipe, name)


def _pipeline_class(name: str) -> Any:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionPipeline if name == "tiny-sd" else StableDiffusionXLPipeline


def _mark(pipe: Any, name: str) -> Any:
    pipe.is_test_model = True
    pipe.photogen_base_model = name
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _save_atomically(pipe: Any, target: Path, name: str, seed: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        pipe.save_pretrained(str(tmp))
        marker = {
            "is_test_model": True,
            "name": name,
            "seed": seed,
            "layout": LAYOUT_VERSION,
            "note": "randomly initialised test model: it draws noise",
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2))
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process cached the same model first; theirs is identical, keep it.
            if not (target / MARKER_FILE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


TINY_UPSCALER = "tiny-upscaler"


def build_tiny_upscaler(*, seed: int = 0) -> Any:
    """A tiny random ``StableDiffusionUpscalePipeline`` with the x4 upscaler's architecture: A TEST MODEL.

    The real model's shape: a UNet over 4 latent + 3 low-resolution image channels (in_channels 7) conditioned
    on the noise level through class embeddings, a three-level VAE (8x8 latents decode to 32x32: 4x) with the
    upscaler's latent scaling 0.08333, a DDPM low-resolution noise scheduler and a v-prediction sampler.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=7,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(16, 32, 32),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
            use_linear_projection=True,
            norm_num_groups=8,
            num_class_embeds=1000,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 16, 16),
            layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            norm_num_groups=4,
            sample_size=64,
            scaling_factor=0.08333,
        )
        text_encoder = CLIPTextModel(_text_config())
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tiny_tokenizer(),
        unet=unet,
        low_res_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear"),
        scheduler=DDIMScheduler(
            num_train_timesteps=1000,
            beta_start=0.0001,
            beta_end=0.02,
            beta_schedule="scaled_linear",
            prediction_type="v_prediction",
        ),
        max_noise_level=350,
    )
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return _mark(pipe, TINY_UPSCALER)


TINY_CONTROLNET = "tiny-controlnet"
TINY_CLIPSEG = "tiny-clipseg"
CLIPSEG_SIZE = 64
"""The tiny CLIPSeg's input side (the real one reads 352 px)."""


def build_tiny_controlnet(unet: Any, *, seed: int = 0) -> Any:
    """A ``ControlNetModel`` for the tiny base whose UNet is ``unet``: A TEST MODEL.

    Built as real ControlNets start, from the base UNet's own encoder (``from_unet``: same blocks, copied
    weights) with a conditioning encoder that brings the pose map down to the latents' size (the tiny VAE
    halves a picture; the real one divides by 8). A real ControlNet's output convolutions start at zero and
    learn; here they are drawn at random (from ``seed``) so that the pose map visibly changes a render.
    """
    from diffusers import ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
        zero_init = [
            *controlnet.controlnet_down_blocks,
            controlnet.controlnet_mid_block,
            controlnet.controlnet_cond_embedding.conv_out,
        ]
        with torch.no_grad():
            for conv in zero_init:
                conv.weight.normal_(0.0, 0.05)
    controlnet.to(device=unet.device, dtype=unet.dtype)
    controlnet.eval()
    controlnet.is_test_model = True
    return controlnet


def build_tiny_clipseg(*, seed: int = 0) -> tuple[Any, Any]:
    """A tiny ``CLIPSegForImageSegmentation`` (CLIP text and vision towers, the FiLM decoder) and its
    ``CLIPSegProcessor`` (the tiny CLIP tokenizer above, a ViT image processor at CLIPSEG_SIZE): A TEST MODEL,
    built offline. Returns (model, processor)."""
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        ViTImageProcessorPil,
    )

    text = _text_config().to_dict()
    config = CLIPSegConfig(
        text_config={
            key: text[key]
            for key in (
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_attention_heads",
                "num_hidden_layers",
                "max_position_embeddings",
                "bos_token_id",
                "eos_token_id",
                "pad_token_id",
            )
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": CLIPSEG_SIZE,
            "patch_size": 16,
        },
        projection_dim=32,
        reduce_dim=16,
        extract_layers=[0, 1],
        decoder_num_attention_heads=4,
        decoder_intermediate_size=37,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPSegForImageSegmentation(config).eval()
    images = ViTImageProcessorPil(
        size={"height": CLIPSEG_SIZE, "width": CLIPSEG_SIZE},
        image_mean=[0.481, 0.458, 0.408],
        image_std=[0.269, 0.261, 0.276],
    )
    model.is_test_model = True
    return model, CLIPSegProcessor(image_processor=images, tokenizer=tiny_tokenizer())


def save_tiny_lora(base: str, path: str | os.PathLike[str], *, seed: int, rank: int = 4) -> Path:
    """A random LoRA for the tiny base ``base`` (attention layers of its UNet), saved in the trainer's file
    format at ``path`` (a .safetensors file): A TEST MODEL, a stand-in for a member's trained LoRA in tests and
    benchmarks. Its A and B matrices are random (from ``seed``), so it visibly changes what it touches."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    path = Path(path)
    pipe = build_tiny_pipeline(base)  # a fresh UNet: LoRA layers go into a throwaway copy
    config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = inject_adapter_in_model(config, pipe.unet)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    path.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(str(path.parent), weight_name=path.name, unet_lora_layers=layers)
    return path


TINY_IP2P = "tiny-ip2p"


def build_tiny_ip2p(*, seed: int = 0) -> Any:
    """A tiny random ``StableDiffusionInstructPix2PixPipeline``: A TEST MODEL that draws noise.

    Built as InstructPix2Pix was made from SD 1.5: the tiny SD 1.x pipeline's own modules (same text encoder,
    VAE and UNet blocks, so a LoRA of ``tiny-sd`` fits it as a member's SD-1.5 LoRA fits the real one), with
    the UNet's first convolution widened from 4 to 8 input channels: the noisy latents plus the latents of
    the picture to edit. The 4 new input channels are drawn at random from ``seed`` (the real model learned
    them), so the source picture visibly steers the result.
    """
    from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel

    base = build_tiny_pipeline("tiny-sd", seed=seed)
    config = dict(base.unet.config)
    config["in_channels"] = 8
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        unet = UNet2DConditionModel.from_config(config)
        state = base.unet.state_dict()
        widened = torch.randn(state["conv_in.weight"].shape) * 0.1
        state["conv_in.weight"] = torch.cat([state["conv_in.weight"], widened], dim=1)
        unet.load_state_dict(state)
    unet.eval()
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=unet,
        scheduler=base.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return _mark(pipe, TINY_IP2P)
