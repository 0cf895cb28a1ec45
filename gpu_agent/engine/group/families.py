"""Which base family a member's LoRA was trained on, read from its file's header (no tensor data).

A LoRA of a cross-attention layer's key projection (``attn2.to_k``) reads the text encoder's features: its
down matrix is as wide as they are (768: SD 1.x, 1024: SD 2.x, 2048: SDXL's two encoders side by side). Members
whose LoRAs disagree cannot share one picture: each region is drawn by the one base model of the agent.
"""

from __future__ import annotations

from pathlib import Path

from gpu_agent.engine.render_types import BadRenderRequest, LoraLoadError, LoraRef

FAMILY_NAMES = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}

MIXED_FAMILIES = (
    "These members' models were trained on different base models ({families}), so they cannot be drawn in "
    "one picture. Everyone in a group picture needs a model trained on the same base model."
)


def text_width(path: Path) -> int | None:
    """The text-feature width the LoRA's cross-attention layers read; None when the file has none of them
    (the load itself then decides whether it fits)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is no mapping
                flat = key.replace("_", ".")
                if "attn2.to.k" in flat and any(tag in flat for tag in ("lora.A", "lora.down")):
                    shape = f.get_slice(key).get_shape()
                    return int(shape[-1]) if len(shape) == 2 else None
    except (OSError, SafetensorError, ValueError):
        return None
    return None


def family_name(width: int) -> str:
    return FAMILY_NAMES.get(width, f"a base with {width}-wide text features")


def check_families(loras: list[LoraRef], base_width: int) -> None:
    """Refuse members whose LoRAs were trained on different base families (BadRenderRequest), or all on one
    this agent's base is not (LoraLoadError), before anything is drawn. Messages name no member."""
    widths = {w for w in (text_width(lora.path) for lora in loras) if w is not None}
    if len(widths) > 1:
        names = " and ".join(sorted(family_name(w) for w in widths))
        raise BadRenderRequest(MIXED_FAMILIES.format(families=names))
    if widths and widths != {base_width}:
        raise LoraLoadError(
            f"the group's models were trained on {family_name(widths.pop())}, not on this server's base model "
            f"({family_name(base_width)})"
        )
