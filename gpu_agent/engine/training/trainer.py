"""train_lora: DreamBooth with LoRA on a Stable Diffusion 1.x/2.x or SDXL base, as a library function.

The loop differs from diffusers' train_dreambooth_lora.py where that saves time or memory and keeps the maths:
photo latents and prompt embeddings are computed once and the VAE (and untrained text encoders) are then
dropped; every random draw of step k comes from a generator seeded by (seed, k), so a resumed run draws
exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from gpu_agent.engine.models import (
    cpu_has_native_bf16,
    is_test_model,
    load_base_pipeline,
    model_family,
    pick_device,
)
from gpu_agent.engine.preview import PreviewPlan, latents_to_image
from gpu_agent.engine.training.artifact import LoraArtifact, write_artifact
from gpu_agent.engine.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from gpu_agent.engine.training.conditioning import (
    Latents,
    PromptEmbeddings,
    encode_images,
    encode_prompts,
    photo_sha256,
)
from gpu_agent.engine.training.config import TrainConfig
from gpu_agent.engine.training.pending import PendingPhotos, Photos
from gpu_agent.engine.training.prior import class_images
from gpu_agent.engine.training.timing import PhaseClock

Progress = Callable[[int, int, float, float], None]
"""progress(step, total, loss, eta_s): called after every optimizer step."""

ADAPTER = "default"
MAX_PHOTOS = 200
EVAL_PHOTOS = 8
EVAL_TIMESTEPS = (0.2, 0.5, 0.8)  # fractions of the schedule
EVAL_CHUNK = 4


class TrainingError(RuntimeError):
    """Training could not run; the message says why."""


class TrainingInputError(TrainingError, ValueError):
    """The photos or the configuration cannot be trained on (nothing was written)."""


class TrainingInterrupted(Exception):
    """``should_stop()`` said stop: the state after ``step`` steps is in ``checkpoint`` (None without a
    checkpoint_dir) and a later call with the same arguments resumes from it."""

    def __init__(self, step: int, checkpoint: Checkpoint | None) -> None:
        super().__init__(f"training stopped after step {step}")
        self.step = step
        self.checkpoint = checkpoint


def train_lora(
    config: TrainConfig,
    photos: Photos,
    *,
    output_dir: str | os.PathLike[str],
    progress: Progress | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    pipeline: Any | None = None,
    preview: PreviewPlan | None = None,
    class_image_dir: str | os.PathLike[str] | None = None,
) -> LoraArtifact:
    """Train a LoRA of ``config.token`` on ``photos``; write lora.safetensors and meta.json to ``output_dir``.

    Resumes from the newest checkpoint in ``checkpoint_dir`` when one exists (same config and photos only).
    ``cache_dir`` holds hub models and class images (a temporary folder when None); ``class_image_dir``, when
    given, is the folder of this run's class images instead (those in it are used, missing ones rendered into
    it; meta.json's ``class_images_rendered`` counts them). ``pipeline`` is an already
    loaded base pipeline of ``config.base_model`` to train on instead of loading one; it is consumed (LoRA
    layers are added and the VAE is dropped). Raises TrainingInputError on bad input, TrainingInterrupted when
    ``should_stop()`` returns True, CheckpointError for a checkpoint of another run. With ``preview``, every
    ``preview.every_steps`` steps (when ``preview.due()``) a small sample of the model so far goes to
    ``preview.deliver``; it uses its own random numbers, so the trained weights are the same with or without it.

    ``photos`` may be a ``Future`` the caller is still preparing (pending.py): the base model is loaded and the
    class images rendered meanwhile; the wait for it is timed as ``photos``, and its error, if it fails, ends
    the run before anything is written.
    """
    source = PendingPhotos(photos, _check_photos)
    device = pick_device(device)
    precision = _resolve_precision(config.mixed_precision, device)
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    checkpoint_path = Path(checkpoint_dir) if checkpoint_dir is not None else None
    clock = PhaseClock()

    pipe = pipeline or load_base_pipeline(
        config.base_model, device=device, dtype=weight_dtype, cache_dir=cache_dir
    )
    if pipe.unet.dtype != weight_dtype:
        # frozen weights in the run's precision (LoRA weights are made fp32 below); one call, so each module
        # is cast as it moves and no full-precision copy of the model ever sits on the GPU
        pipe.to(device, weight_dtype)
    else:
        pipe.to(device)
    family = model_family(pipe)
    sdxl = family == "sdxl"
    _check_resolution(pipe, config.resolution)
    clock.lap("model_load")
    source.poll()

    with tempfile.TemporaryDirectory(prefix="photogen-class-") as scratch:
        run = _Run(config, pipe, device, weight_dtype, precision, sdxl)
        run.cache_conditioning(
            source,
            Path(cache_dir) if cache_dir else Path(scratch),
            Path(class_image_dir) if class_image_dir is not None else None,
            clock,
        )
    photo_hashes = [photo_sha256(p) for p in source.get()]
    run.add_lora()
    run.make_optimizer()
    run.speed_up()

    start = 0
    resumed_from = None
    checkpoint = latest_checkpoint(checkpoint_path)
    if checkpoint is not None:
        if checkpoint.step > config.steps:
            raise CheckpointError(
                f"checkpoint at step {checkpoint.step} is past this run's {config.steps} steps"
            )
        start = load_checkpoint(
            checkpoint, **run.state(), fingerprint=config.fingerprint(), photo_hashes=photo_hashes
        )
        resumed_from = start
    else:
        _seed_global_rngs(config.seed)

    clock.lap("setup")

    def checkpoint_now(step: int) -> Checkpoint | None:
        if checkpoint_path is None:
            return None
        with clock.aside("checkpoints"):
            return save_checkpoint(
                checkpoint_path,
                step=step,
                **run.state(),
                fingerprint=config.fingerprint(),
                photo_hashes=photo_hashes,
            )

    began = time.monotonic()
    loss = math.nan
    pending: torch.Tensor | None = None  # the last step's loss, still on the device
    for step in range(start, config.steps):
        if should_stop is not None and should_stop():
            raise TrainingInterrupted(step, checkpoint_now(step))
        pending = run.step(step)
        done = step + 1
        if done % config.loss_every == 0 or done in (start + 1, config.steps):
            # Reading a loss waits for the device: every loss_every steps only, so the host queues the next
            # steps' kernels while the GPU runs (progress reports the last loss read).
            loss = float(pending)
        if done % config.checkpoint_every == 0 and done < config.steps:
            checkpoint_now(done)
        if preview is not None and done % preview.every_steps == 0 and done < config.steps and preview.due():
            # never larger than the training crops: the model has learnt that size, and attention cost grows
            # with the square of the latent's area
            size = min(preview.size, config.resolution)
            with clock.aside("previews"):
                picture = run.preview(size=size, steps=preview.steps, family=family)
                preview.deliver(done, config.steps, picture)
        if progress is not None:
            per_step = (time.monotonic() - began) / (done - start)
            progress(done, config.steps, loss, per_step * (config.steps - done))

    clock.lap("steps")
    # Evaluation costs about a dozen steps' worth of forward passes after the last step, before the member's
    # first picture: only when the configuration asks for it.
    base_loss, trained_loss = run.eval_losses() if config.eval_losses else (None, None)
    clock.lap("eval")
    meta = {
        "base_model": config.base_model,
        "family": family,
        "token": config.token,
        "class_word": config.class_word,
        "subject": config.subject,
        "instance_prompt": config.instance_text(),
        "steps": config.steps,
        "resolution": config.resolution,
        "rank": config.rank,
        "alpha": config.lora_alpha(),
        "hyperparameters": config.model_dump(mode="json"),
        "photo_sha256": photo_hashes,
        "is_test_model": is_test_model(pipe),
        "optimizer": run.optimizer_name,
        "mixed_precision": precision,
        "device": device.type,
        "final_loss": loss,
        "resumed_from_step": resumed_from,
        "eval_loss_base": base_loss,
        "eval_loss_trained": trained_loss,
        "text_encoder_trained": config.train_text_encoder,
        "class_images_rendered": run.class_images_rendered,
    }
    artifact = write_artifact(
        Path(output_dir),
        pipeline_class=type(pipe),
        lora_layers=run.lora_layers(),
        adapter_metadata=run.adapter_metadata(),
        meta=meta,
    )
    if checkpoint_path is not None:
        # The artifact supersedes the checkpoints; a retry of a finished job starts from meta.json, not them.
        checkpoint_now(config.steps)
    clock.lap("save")
    return dataclasses.replace(artifact, timings=clock.timings())


# --- the run's state ----------------------------------------------------------------------------------------


class _Run:
    def __init__(
        self,
        config: TrainConfig,
        pipe: Any,
        device: torch.device,
        weight_dtype: torch.dtype,
        precision: str,
        sdxl: bool,
    ) -> None:
        from diffusers import DDPMScheduler

        self.config, self.pipe, self.device, self.sdxl = config, pipe, device, sdxl
        self.weight_dtype, self.precision = weight_dtype, precision
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.text_encoders = [
            te for te in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if te is not None
        ]
        self.photos: Latents | None = None
        self.classes: Latents | None = None
        self.class_images_rendered = 0
        self.prompts: PromptEmbeddings | None = None
        self.grad_scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    # conditioning, once per run

    def cache_conditioning(
        self,
        photos: PendingPhotos,
        cache_root: Path,
        folder: Path | None = None,
        clock: PhaseClock | None = None,
    ) -> None:
        cfg, pipe = self.config, self.pipe
        clock = clock or PhaseClock()
        if cfg.prior_preservation:
            images, self.class_images_rendered = class_images(
                pipe,
                cache_root=cache_root,
                base_model=cfg.base_model,
                class_prompt=cfg.class_text(),
                count=cfg.num_class_images,
                resolution=cfg.resolution,
                steps=cfg.class_image_steps,
                seed=cfg.seed,
                folder=folder,
                on_step_end=photos.step_callback(),
            )
        clock.lap("class_images")
        pictures = photos.get()  # the caller's preparation ran beside the model load and the class images
        if photos.pending:
            clock.lap("photos")
        encode: dict[str, Any] = {"resolution": cfg.resolution, "sdxl": self.sdxl, "device": self.device}
        if cfg.prior_preservation:
            # one pass of the VAE over both sets (batched by encode_images), split after
            both = encode_images(pipe.vae, pipe.image_processor, [*pictures, *images], **encode)
            self.photos, self.classes = both.split(len(pictures))
        else:
            self.photos = encode_images(pipe.vae, pipe.image_processor, pictures, **encode)
        if not cfg.train_text_encoder:
            with torch.no_grad():
                self.prompts = self._embed()
        # The VAE's work is done; without text-encoder training so is the text encoders'. Drop them so their
        # memory is free for the UNet's activations.
        pipe.vae = None
        if not cfg.train_text_encoder:
            pipe.text_encoder = None
            if self.sdxl:
                pipe.text_encoder_2 = None
            self.text_encoders = []
        if self.device.type == "cuda":
            # the device's memory is what the UNet's activations need (a full collection took 0.3 s on the
            # CPU, where the dropped modules are freed by their reference counts alone)
            gc.collect()
            torch.cuda.empty_cache()
        clock.lap("caching")

    def _embed(self) -> PromptEmbeddings:
        texts = [self.config.instance_text()] + (
            [self.config.class_text()] if self.config.prior_preservation else []
        )
        return encode_prompts(self.pipe, texts, sdxl=self.sdxl, device=self.device)

    # LoRA and optimizer

    def add_lora(self) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig, inject_adapter_in_model

        cfg, unet = self.config, self.pipe.unet
        unet.requires_grad_(False)
        for te in self.text_encoders:
            te.requires_grad_(False)
        unet.set_attn_processor(AttnProcessor2_0())  # torch's fused scaled-dot-product attention
        # LoRA A matrices are drawn from the global RNG: seed it here so the init depends on config.seed only.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            unet.add_adapter(
                LoraConfig(
                    r=cfg.rank,
                    lora_alpha=cfg.lora_alpha(),
                    lora_dropout=cfg.lora_dropout,
                    init_lora_weights="gaussian",
                    target_modules=list(cfg.unet_target_modules),
                )
            )
            if cfg.train_text_encoder:
                for te in self.text_encoders:
                    # peft itself: transformers 5's add_adapter wants a newer peft than diffusers needs.
                    inject_adapter_in_model(
                        LoraConfig(
                            r=cfg.rank,
                            lora_alpha=cfg.lora_alpha(),
                            lora_dropout=cfg.lora_dropout,
                            init_lora_weights="gaussian",
                            target_modules=list(cfg.text_encoder_target_modules),
                        ),
                        te,
                        adapter_name=ADAPTER,
                    )
        models = [unet] + (self.text_encoders if cfg.train_text_encoder else [])
        for model in models:
            model.train()  # LoRA dropout is live only in train mode; pipelines load in eval mode
        if self.precision != "no":
            cast_training_params(models, dtype=torch.float32)  # trainable LoRA weights stay fp32
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            for te in self.text_encoders:
                te.gradient_checkpointing_enable()
        names = ["unet", "text_encoder", "text_encoder_2"]
        self.params: dict[str, torch.nn.Parameter] = {
            f"{name}.{key}": p
            for name, model in zip(names, models, strict=False)  # SD 1.x/2.x: one text encoder
            for key, p in model.named_parameters()
            if p.requires_grad
        }
        if not self.params:
            raise TrainingError("no LoRA layers were added: none of the target modules exist in this model")

    def make_optimizer(self) -> None:
        from diffusers.optimization import get_scheduler

        cfg = self.config
        unet_params = [p for k, p in self.params.items() if k.startswith("unet.")]
        te_params = [p for k, p in self.params.items() if not k.startswith("unet.")]
        groups = [{"params": unet_params, "lr": cfg.learning_rate}]
        if te_params:
            groups.append({"params": te_params, "lr": cfg.text_encoder_learning_rate})
        optimizer_class, self.optimizer_name = _adamw(cfg.use_8bit_adam and self.device.type == "cuda")
        extra: dict[str, Any] = {}
        if optimizer_class is torch.optim.AdamW and self.device.type == "cuda":
            # One fused kernel for all LoRA tensors instead of a handful per tensor (the weights are fp32 on
            # CUDA, which the fused path needs); same update rule.
            extra["fused"] = True
            self.optimizer_name = "AdamW(fused)"
        self.optimizer = optimizer_class(
            groups,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.adam_weight_decay,
            eps=cfg.adam_epsilon,
            **extra,
        )
        self.lr_scheduler = get_scheduler(
            cfg.lr_schedule,
            self.optimizer,
            num_warmup_steps=cfg.lr_warmup_steps,
            num_training_steps=cfg.steps,
        )

    def speed_up(self) -> None:
        """The step's speed knobs (docs/TRAINING.md): channels-last memory layout for the UNet's convolutions
        and torch.compile of the UNet with its LoRA layers. Same maths; compile changes the rounding order."""
        cfg, unet = self.config, self.pipe.unet
        self.channels_last = _resolve_auto(cfg.channels_last, self.device)
        if self.channels_last:
            unet.to(memory_format=torch.channels_last)
        self.compiled = _resolve_auto(cfg.compile_unet, self.device, min_steps=cfg.steps)
        self.forward = torch.compile(unet) if self.compiled else unet

    def state(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "optimizer": self.optimizer,
            "lr_scheduler": self.lr_scheduler,
            "grad_scaler": self.grad_scaler,
        }

    # one step

    def step(self, step: int) -> torch.Tensor:
        cfg = self.config
        assert self.photos is not None, "the photos are encoded when the run is set up"
        generator = torch.Generator("cpu").manual_seed(_derive_seed(cfg.seed, "step", step))
        photo_index = _batch_indices(cfg.seed, "photos", step, cfg.batch_size, len(self.photos))
        batches = [(self.photos, photo_index, 0)]
        if self.classes is not None:
            batches.append(
                (
                    self.classes,
                    _batch_indices(cfg.seed, "classes", step, cfg.batch_size, len(self.classes)),
                    1,
                )
            )
        with torch.autocast(self.device.type, dtype=self.weight_dtype, enabled=self.precision != "no"):
            prompts = self.prompts if self.prompts is not None else self._embed()
            per_sample, weights = self._losses(batches, prompts, generator, snr=True)
        instance = (per_sample[: cfg.batch_size] * weights[: cfg.batch_size]).mean()
        loss = instance
        if self.classes is not None:
            loss = (
                instance
                + cfg.prior_loss_weight * (per_sample[cfg.batch_size :] * weights[cfg.batch_size :]).mean()
            )
        self._backward(loss)
        return loss.detach()

    def _losses(
        self,
        batches: list[tuple[Latents, torch.Tensor, int]],
        prompts: PromptEmbeddings,
        generator: torch.Generator,
        *,
        snr: bool,
        timesteps: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        sample: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample denoising losses (and their min-SNR weights) of the concatenated batches."""
        cfg, device = self.config, self.device
        latents = torch.cat(
            [src.sample(idx, generator) if sample else src.mean[idx] for src, idx, _ in batches]
        )
        prompt_rows = torch.cat([torch.full((len(idx),), row, dtype=torch.long) for _, idx, row in batches])
        n = latents.shape[0]
        if noise is None:
            noise = torch.randn(latents.shape, generator=generator)
            if cfg.noise_offset:
                noise = noise + cfg.noise_offset * torch.randn(
                    (n, latents.shape[1], 1, 1), generator=generator
                )
        noise = noise.to(device)
        if timesteps is None:
            timesteps = torch.randint(
                0, self.noise_scheduler.config.num_train_timesteps, (n,), generator=generator
            )
        timesteps = timesteps.to(device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        rows = prompt_rows.to(device)
        kwargs: dict[str, Any] = {}
        if self.sdxl:
            assert prompts.pooled is not None  # SDXL's second text encoder gives it
            # SDXL latents always carry their size conditioning
            time_ids = torch.cat([src.time_ids[idx] for src, idx, _ in batches if src.time_ids is not None])
            kwargs["added_cond_kwargs"] = {"text_embeds": prompts.pooled[rows], "time_ids": time_ids}
        noisy = noisy.to(self.weight_dtype)
        if getattr(self, "channels_last", False):
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        unet = getattr(self, "forward", self.pipe.unet) if self.pipe.unet.training else self.pipe.unet
        prediction = unet(noisy, timesteps, prompts.hidden[rows], **kwargs).sample
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        weights = torch.ones_like(per_sample)
        if snr and cfg.snr_gamma is not None:
            from diffusers.training_utils import compute_snr

            # Min-SNR-gamma (Hang et al. 2023): clamp the weight of low-noise timesteps, whose easy targets
            # otherwise dominate the gradient.
            s = compute_snr(self.noise_scheduler, timesteps).float()
            clamped = torch.clamp(s, max=cfg.snr_gamma)
            weights = (
                clamped / (s + 1)
                if self.noise_scheduler.config.prediction_type == "v_prediction"
                else clamped / s
            )
        return per_sample, weights

    def _backward(self, loss: torch.Tensor) -> None:
        params = list(self.params.values())
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    # evaluation and output

    @torch.no_grad()
    def preview(self, *, size: int, steps: int, family: Any) -> Image.Image:
        """A small sample of the instance prompt with the LoRA so far: a few DDIM steps from fixed noise, shown
        through the latent-to-RGB approximation (the VAE is gone by now). Touches no global random state and
        restores every module's train/eval mode, so training goes on exactly as without it."""
        from diffusers import DDIMScheduler

        cfg, unet = self.config, self.pipe.unet
        models = [unet, *self.text_encoders]
        modes = [m.training for m in models]
        for model in models:
            model.eval()
        try:
            scheduler = DDIMScheduler.from_config(self.pipe.scheduler.config)
            scheduler.set_timesteps(steps, device=self.device)
            edge = max(8, size // self.pipe.vae_scale_factor)
            generator = torch.Generator("cpu").manual_seed(_derive_seed(cfg.seed, "preview", 0))
            latents = torch.randn((1, unet.config.in_channels, edge, edge), generator=generator)
            latents = (latents * scheduler.init_noise_sigma).to(self.device)
            kwargs: dict[str, Any] = {}
            with torch.autocast(self.device.type, dtype=self.weight_dtype, enabled=self.precision != "no"):
                prompts = self.prompts if self.prompts is not None else self._embed()
                if self.sdxl:
                    assert prompts.pooled is not None  # SDXL's second text encoder gives it
                    px = edge * self.pipe.vae_scale_factor
                    time_ids = torch.tensor([[px, px, 0, 0, px, px]], dtype=prompts.pooled.dtype)
                    kwargs["added_cond_kwargs"] = {
                        "text_embeds": prompts.pooled[:1],
                        "time_ids": time_ids.to(self.device),
                    }
                for t in scheduler.timesteps:
                    sample = scheduler.scale_model_input(latents, t).to(self.weight_dtype)
                    noise = unet(sample, t, prompts.hidden[:1], **kwargs).sample
                    latents = scheduler.step(noise.float(), t, latents.float()).prev_sample
        finally:
            for model, mode in zip(models, modes, strict=True):
                model.train(mode)
        return latents_to_image(latents, family)

    @torch.no_grad()
    def eval_losses(self) -> tuple[float, float]:
        """Plain denoising loss on a fixed batch (up to 8 photos, fixed noise, three timesteps across the
        schedule), with the LoRA off and on: a trained LoRA must fit its photos better than the base does.

        Costs about a dozen training steps' worth of forward passes, run in small chunks so it never sets
        the run's memory peak.
        """
        assert self.photos is not None, "the photos are encoded when the run is set up"
        photos = min(len(self.photos), EVAL_PHOTOS)
        generator = torch.Generator("cpu").manual_seed(_derive_seed(self.config.seed, "eval", 0))
        total = self.noise_scheduler.config.num_train_timesteps
        index = torch.arange(photos).repeat_interleave(len(EVAL_TIMESTEPS))
        timesteps = torch.tensor([int(total * t) for t in EVAL_TIMESTEPS]).repeat(photos)
        noise = torch.randn((len(index), *self.photos.mean.shape[1:]), generator=generator)
        for model in [self.pipe.unet, *self.text_encoders]:
            model.eval()
        results = []
        for enabled in (False, True):
            _enable_lora([self.pipe.unet, *self.text_encoders], enabled)
            losses = []
            with torch.autocast(self.device.type, dtype=self.weight_dtype, enabled=self.precision != "no"):
                prompts = self.prompts if self.prompts is not None else self._embed()
                for chunk in torch.arange(len(index)).split(EVAL_CHUNK):
                    per_sample, _ = self._losses(
                        [(self.photos, index[chunk], 0)],
                        prompts,
                        generator,
                        snr=False,
                        timesteps=timesteps[chunk],
                        noise=noise[chunk],
                        sample=False,
                    )
                    losses.append(per_sample.float())
            results.append(float(torch.cat(losses).mean()))
        return results[0], results[1]

    def lora_layers(self) -> dict[str, dict[str, Any]]:
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = {"unet": convert_state_dict_to_diffusers(get_peft_model_state_dict(self.pipe.unet))}
        if self.config.train_text_encoder:
            for name, te in zip(("text_encoder", "text_encoder_2"), self.text_encoders, strict=False):
                layers[name] = convert_state_dict_to_diffusers(get_peft_model_state_dict(te))
        return layers

    def adapter_metadata(self) -> dict[str, dict[str, Any]]:
        models = {"unet": self.pipe.unet}
        if self.config.train_text_encoder:
            models.update(zip(("text_encoder", "text_encoder_2"), self.text_encoders, strict=False))
        return {name: model.peft_config[ADAPTER].to_dict() for name, model in models.items()}


# --- helpers ------------------------------------------------------------------------------------------------


def _check_photos(photos: list[Image.Image]) -> None:
    if not isinstance(photos, (list, tuple)) or not photos:
        raise TrainingInputError(
            "no photos to train on: a training needs at least one photo (5-20 recommended)"
        )
    if len(photos) > MAX_PHOTOS:
        raise TrainingInputError(f"{len(photos)} photos is more than the {MAX_PHOTOS} one training accepts")
    for i, photo in enumerate(photos):
        if not isinstance(photo, Image.Image):
            raise TrainingInputError(f"photo {i} is a {type(photo).__name__}, not a decoded PIL image")
        if min(photo.size) < 8:
            raise TrainingInputError(f"photo {i} is only {photo.width}x{photo.height} pixels")


def _check_resolution(pipe: Any, resolution: int) -> None:
    # The VAE downsamples by vae_scale_factor and the UNet halves the latent once per down block but the last;
    # every halving must be exact or the skip connections' shapes disagree.
    multiple = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    if resolution % multiple:
        raise TrainingInputError(
            f"resolution {resolution} does not fit base model {getattr(pipe, 'photogen_base_model', '?')}: "
            f"it must be a multiple of {multiple} pixels"
        )


def _resolve_precision(setting: str, device: torch.device) -> str:
    if device.type == "cpu":
        if setting == "fp16":
            raise TrainingInputError("fp16 mixed precision needs a CUDA GPU; on a CPU use bf16 or no")
        if setting == "auto":
            return "bf16" if cpu_has_native_bf16() else "no"
        return setting
    if device.type != "cuda":
        if setting in ("fp16", "bf16"):
            raise TrainingInputError(
                f"{setting} mixed precision needs a CUDA GPU or a CPU; this run is on {device.type}"
            )
        return "no"
    if setting == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return setting


COMPILE_MIN_STEPS = 300
"""auto compiles the UNet on CUDA for runs of at least this many steps: compiling a full-size UNet takes about
a minute, which a short run does not win back."""


def _resolve_auto(setting: str, device: torch.device, *, min_steps: int = 0) -> bool:
    if setting == "auto":
        return device.type == "cuda" and (not min_steps or min_steps >= COMPILE_MIN_STEPS)
    return setting == "on"


def _adamw(eight_bit: bool) -> tuple[type, str]:
    if eight_bit:
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit, "AdamW8bit"
        except ImportError:
            pass
    return torch.optim.AdamW, "AdamW"


def _enable_lora(models: list[Any], enabled: bool) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for model in models:
        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                module.enable_adapters(enabled)


def _derive_seed(seed: int, purpose: str, n: int) -> int:
    digest = hashlib.sha256(f"{seed}:{purpose}:{n}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _batch_indices(seed: int, purpose: str, step: int, batch: int, count: int) -> torch.Tensor:
    """Indices of step ``step``'s batch: epochs walk a fresh seeded permutation, as a shuffled loader would,
    but any step's batch is computable directly, which is what exact resume needs."""
    picks = []
    for position in range(step * batch, step * batch + batch):
        epoch, offset = divmod(position, count)
        order = torch.randperm(
            count, generator=torch.Generator("cpu").manual_seed(_derive_seed(seed, purpose, epoch))
        )
        picks.append(int(order[offset]))
    return torch.tensor(picks, dtype=torch.long)


def _seed_global_rngs(seed: int) -> None:
    # LoRA dropout draws from torch's global RNG; seeding (and checkpointing) it makes those draws repeatable.
    from accelerate.utils import set_seed

    set_seed(seed)
