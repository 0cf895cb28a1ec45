"""The tiny test models and the base-model loader: built offline, deterministic, cached, clearly labelled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpu_agent.engine.models import (
    BaseModelError,
    cpu_has_native_bf16,
    is_test_model,
    load_base_pipeline,
    model_family,
    pick_device,
    pick_dtype,
)
from gpu_agent.engine.tiny import MARKER_FILE, build_tiny_pipeline, tiny_tokenizer

REPO = Path(__file__).resolve().parents[3]


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_models_are_deterministic_per_seed_and_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, again = build_tiny_pipeline("tiny-sd", seed=0), build_tiny_pipeline("tiny-sd", seed=0)
    other = build_tiny_pipeline("tiny-sd", seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    assert same_weights(first.unet, again.unet) and same_weights(first.text_encoder, again.text_encoder)
    assert not same_weights(first.unet, other.unet)


@pytest.mark.parametrize(
    "name,family,classname",
    [("tiny-sd", "sd1", "StableDiffusionPipeline"), ("tiny-sdxl", "sdxl", "StableDiffusionXLPipeline")],
)
def test_load_base_pipeline_resolves_tiny_models_and_caches_them(
    model_cache: Path,
    name: str,
    family: str,
    classname: str,
) -> None:
    pipe = load_base_pipeline(name, device="cpu", dtype=None, cache_dir=model_cache)
    assert type(pipe).__name__ == classname and model_family(pipe) == family
    assert is_test_model(pipe) and pipe.unet.dtype == pick_dtype(torch.device("cpu"))
    cached = next((model_cache / "tiny").glob(f"{name}-seed0-*"))
    marker = json.loads((cached / MARKER_FILE).read_text())
    assert marker["is_test_model"] is True and "noise" in marker["note"]
    # the second load comes from disk, with the very same weights as a fresh build
    assert same_weights(
        load_base_pipeline(name, device="cpu", dtype=torch.float32, cache_dir=model_cache).unet,
        build_tiny_pipeline(name).unet,
    )
    image = pipe(
        "a photo of sks man",
        num_inference_steps=2,
        height=32,
        width=32,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.size == (32, 32)


def test_img2img_shares_the_weights_of_the_base() -> None:
    pipe = load_base_pipeline("tiny-sd", device="cpu", dtype=None, cache_dir=None, img2img=True)
    assert type(pipe).__name__ == "StableDiffusionImg2ImgPipeline" and is_test_model(pipe)


def test_tokenizer_is_clip_shaped_and_covers_any_text() -> None:
    tok = tiny_tokenizer()
    ids = tok("a photo of sks man, Ünïcode & emoji 🙂", padding="max_length", truncation=True).input_ids
    assert tok.model_max_length == 77 and len(ids) == 77
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids[: ids.index(tok.eos_token_id)]
    assert len(tok("sks").input_ids) == 3  # whole-word token between start and end


def test_pick_device_and_dtype_rules() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype(torch.device("cpu")) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert pick_dtype(torch.device("mps")) == torch.float16
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(BaseModelError, match="no CUDA GPU"):
            pick_device("cuda")
    with pytest.raises(BaseModelError, match="unknown device"):
        pick_device("tpu")


def test_missing_local_path_and_garbage_names_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="no such file or folder"):
        load_base_pipeline(str(tmp_path / "nothing-here"), device="cpu")
    (tmp_path / "weights.bin").write_bytes(b"junk")
    with pytest.raises(BaseModelError, match=r"no model_index\.json"):
        load_base_pipeline(str(tmp_path), device="cpu")
    with pytest.raises(BaseModelError, match="neither a built-in"):
        load_base_pipeline("rm -rf /;", device="cpu")


def test_local_folder_loads_through_from_pretrained(tmp_path: Path) -> None:
    build_tiny_pipeline("tiny-sd", seed=3).save_pretrained(tmp_path / "my-model")
    pipe = load_base_pipeline(str(tmp_path / "my-model"), device="cpu", dtype=torch.float32)
    assert model_family(pipe) == "sd1" and not is_test_model(pipe)  # a local folder is taken as a real model
    assert same_weights(pipe.unet, build_tiny_pipeline("tiny-sd", seed=3).unet)


def test_hub_id_offline_names_the_model_and_says_to_download_it(tmp_path: Path) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: a fresh interpreter is the honest way to set it.
    code = (
        "from gpu_agent.engine.models import load_base_pipeline\n"
        "load_base_pipeline('stabilityai/stable-diffusion-xl-base-1.0', device='cpu',\n"
        f"                   cache_dir={str(tmp_path)!r})\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "BaseModelError" in done.stderr
    assert "'stabilityai/stable-diffusion-xl-base-1.0' is not in the model cache" in done.stderr
    assert "must be downloaded on a machine with internet" in done.stderr
