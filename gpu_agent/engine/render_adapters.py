"""Members' LoRAs inside the Renderer's pipeline: which are resident, and how a new one gets in.

Each resident LoRA lives in a *slot*: a named peft adapter ("slot0", "slot1", ...) in the UNet and text
encoder(s). Up to ``max_resident`` slots stay loaded, least recently used first out. A member whose LoRA is
resident costs nothing but ``set_adapters``; a new member's LoRA gets in one of two ways:

- **inject** — ``load_lora_weights`` into a new slot: peft walks every module of the UNet (about 700 in
  SD-1.5, 2,400 once two adapters are in), several times, to wrap the targeted layers and load the weights;
  evicting the least recently used slot walks it again. That Python is the swap's time (0.25-0.33 s on a
  full-size SD-1.5 UNet, on a CPU or a GPU host alike); the copies are a few MB.
- **hotswap** — when every slot is taken, the least recently used one is reused: diffusers'
  ``load_lora_into_unet(..., hotswap=True)`` (peft's ``hotswap_adapter_from_state_dict``) copies the new
  tensors into the slot's existing LoRA layers in place, with no layers added or removed (0.07-0.08 s in
  all on the same model, set_adapters included). Diffusers refuses hotswap for text encoders; there peft's
  ``set_peft_model_state_dict`` loads
  the new weights into the slot's existing layers, which is the same in-place copy.

A hotswap is only done into a slot whose file had the same *layout* (same tensor names, shapes and dtypes,
same adapter metadata, nothing but weight matrices) — in practice every LoRA one trainer config writes.
Anything else is injected, because:

- ``set_adapters`` rescales each layer from the rank and alpha recorded when the slot was injected, which a
  hotswap does not update: a LoRA with another alpha would render at the wrong strength;
- peft would zero-pad a smaller rank into a bigger slot: the same maths, but other matrix shapes can round
  differently, and the renderer promises the exact pixels of the LoRA alone in a fresh pipeline;
- a LoRA that targets layers the slot lacks cannot be hotswapped at all (peft raises);
- kohya-style files carry alphas as tensor *values*, which a layout comparison cannot see.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gpu_agent.engine.render_types import LoraLoadError, LoraRef

log = logging.getLogger(__name__)

MAX_LORA_BYTES = 2 * 1024**3

LoadPath = Literal["resident", "hotswap", "inject"]
"""How ``AdapterSlots.activate`` made a LoRA resident: it already was, reused a slot, or added one."""

Fingerprint = tuple[int, int, int]
Layout = tuple[tuple[tuple[str, tuple[int, ...], str], ...], tuple[tuple[str, str], ...]]

_TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
_QUIET = (
    # peft warns whenever a second adapter joins a model; several resident adapters is the design.
    "Already found a `peft_config`",
    # diffusers deletes a half-loaded adapter itself before re-raising, and peft warns when the adapter it
    # deletes was the active one; the next render activates its own.
    "Adapter .* was active which is now deleted",
)


class _NoLoraLoadReport(logging.Filter):
    """transformers 5 logs a "LOAD REPORT" calling every LoRA weight of a text encoder MISSING and "newly
    initialized" while diffusers injects a member's LoRA; diffusers sets those weights right after (the tests
    compare them with the file), so in an agent's log the report only alarms."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


_PEFT_LOG = logging.getLogger("transformers.integrations.peft")


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Without the warnings and the log report above, which say nothing wrong about a member's LoRA."""
    report = _NoLoraLoadReport()
    _PEFT_LOG.addFilter(report)
    try:
        with warnings.catch_warnings():
            for message in _QUIET:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        _PEFT_LOG.removeFilter(report)


@dataclass(frozen=True)
class _Held:
    slot: str
    fingerprint: Fingerprint
    layout: Layout | None


def file_fingerprint(path: Path) -> Fingerprint:
    """(size, mtime, inode): a retrained model rewritten under the same id has another one."""
    if path.suffix != ".safetensors":
        raise LoraLoadError("a LoRA must be a .safetensors file")
    try:
        if not path.is_file():
            raise LoraLoadError("the LoRA file is missing")
        st = path.stat()
    except OSError as err:
        raise LoraLoadError(f"the LoRA file cannot be read: {err.strerror}") from None
    if not 0 < st.st_size <= MAX_LORA_BYTES:
        raise LoraLoadError("the LoRA file is empty or too large")
    return st.st_size, st.st_mtime_ns, st.st_ino


def file_layout(path: Path) -> Layout | None:
    """The file's tensor names, shapes and dtypes and its header metadata, read from the safetensors header
    only (no tensor data); None when the file cannot be hotswapped (unreadable, or tensors other than weight
    matrices). Two files with equal layouts load into identically shaped and scaled adapter layers."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = sorted(f.keys())
            # Only weight matrices: kohya-style ".alpha" scalars and DoRA scales set a layer's scaling from
            # tensor values, which a layout cannot compare.
            if not keys or not all(k.endswith(".weight") for k in keys):
                return None
            tensors = tuple((k, tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in keys)
            metadata = tuple(sorted((f.metadata() or {}).items()))
    except (OSError, SafetensorError, ValueError):
        return None  # the inject path reports it as a file that does not fit
    return tensors, metadata


class AdapterSlots:
    """The resident LoRAs of one pipeline (its txt2img pipeline; img2img shares its modules)."""

    def __init__(self, pipe: Any, base_model: str, *, max_resident: int, hotswap: bool = True) -> None:
        if max_resident < 1:
            raise ValueError("max_resident must be at least 1")
        self.pipe = pipe
        self.base_model = base_model
        self.max_resident = max_resident
        self.hotswap = hotswap
        """Reuse the least recently used slot for a new LoRA of the same layout; False always injects."""
        # member adapter name ("m_<model id>") -> its slot, least recently used first
        self._resident: OrderedDict[str, _Held] = OrderedDict()
        self._next_slot = 0
        # (slot, scale) that set_adapters last activated; None: LoRA layers bypassed (or none exist).
        # Any change to the adapters makes it unknown, so the next render sets it again.
        self._active: tuple[str, float] | Literal["unknown"] | None = None
        # disable_lora was called and enable_lora not since (layers injected meanwhile are on, the rest off)
        self._bypassed = False

    @property
    def resident_models(self) -> list[str]:
        """Model ids whose LoRAs are loaded, least recently used first."""
        return [name.removeprefix("m_") for name in self._resident]

    def slot_of(self, model_id: str) -> str | None:
        """The adapter name that holds a model's LoRA, if it is resident."""
        held = self._resident.get(f"m_{model_id}")
        return held.slot if held else None

    def activate(self, lora: LoraRef | None) -> LoadPath | None:
        """Make ``lora`` resident and the only active adapter, or bypass every LoRA layer for None."""
        if lora is None:
            if self._active is not None and self._resident:
                self.pipe.disable_lora()
                self._bypassed = True
            self._active = None
            return None
        held, path = self._make_resident(lora)
        if self._active != (held.slot, lora.scale):
            # Each of these walks every module of the UNet and text encoder(s): only when something changed.
            if self._bypassed:
                self.pipe.enable_lora()
                self._bypassed = False
            self.pipe.set_adapters([held.slot], adapter_weights=[lora.scale])
            self._active = (held.slot, lora.scale)
        return path

    def resident_slot(self, lora: LoraRef) -> str:
        """Make ``lora`` resident without changing which adapters are active; its slot's adapter name. Raises
        LoraLoadError as activate would. (A mixed batch brings its members in one by one: engine/batch.)"""
        return self._make_resident(lora)[0].slot

    def activate_slots(self, scales: dict[str, float]) -> None:
        """Every slot in ``scales`` active at once, each at its scale, for a mixed-member batch whose rows then
        name their own adapter (engine/batch); the next ``activate`` sets a single one again."""
        if self._bypassed:
            self.pipe.enable_lora()
            self._bypassed = False
        if scales:
            self.pipe.set_adapters(list(scales), adapter_weights=list(scales.values()))
        self._active = "unknown"

    def _make_resident(self, lora: LoraRef) -> tuple[_Held, LoadPath]:
        member = lora.adapter_name
        fingerprint = file_fingerprint(lora.path)
        held = self._resident.get(member)
        if held is not None and held.fingerprint != fingerprint:
            # The model was retrained under the same id (a retried job overwrites its blob): reload it.
            self._delete(member)
            held = None
        path: LoadPath = "resident"
        if held is None:
            held, path = self._bring_in(member, lora.path, fingerprint)
        self._resident.move_to_end(member)
        while len(self._resident) > self.max_resident:
            self._delete(next(iter(self._resident)))
        return held, path

    def evict(self, model_id: str) -> bool:
        """Drop a model's LoRA (e.g. the member deleted it); True when it was resident."""
        name = f"m_{model_id}"
        if name not in self._resident:
            return False
        self._delete(name)
        return True

    # --- getting a LoRA in ----------------------------------------------------------------------------------

    def _bring_in(self, member: str, path: Path, fingerprint: Fingerprint) -> tuple[_Held, LoadPath]:
        layout = file_layout(path)
        if self.hotswap and layout is not None and len(self._resident) >= self.max_resident:
            lru_member, lru = next(iter(self._resident.items()))
            if lru.layout == layout and self._can_hotswap() and self._hotswap(lru_member, lru.slot, path):
                held = _Held(lru.slot, fingerprint, layout)
                self._resident[member] = held
                return held, "hotswap"
        # Load first, evict after: a file that fails to load must not cost another member their slot.
        slot = f"slot{self._next_slot}"
        self._next_slot += 1
        self._inject(slot, path)
        held = _Held(slot, fingerprint, layout)
        self._resident[member] = held
        return held, "inject"

    def _can_hotswap(self) -> bool:
        return getattr(self.pipe, "unet", None) is not None and hasattr(self.pipe, "load_lora_into_unet")

    def _text_encoders(self) -> list[tuple[str, Any]]:
        return [(n, m) for n in _TEXT_ENCODERS if (m := getattr(self.pipe, n, None)) is not None]

    def _hotswap(self, lru_member: str, slot: str, path: Path) -> bool:
        """Reuse ``slot`` (held by ``lru_member``) for the file at ``path``; False if that failed. A file that
        cannot be read leaves the slot as it was; a failure after that drops the slot, and ``lru_member``
        (the next to be evicted anyway) reloads on its next job."""
        pipe = self.pipe
        try:
            # What load_lora_weights reads first; unet_config only matters for kohya SDXL files.
            state_dict, alphas, metadata = pipe.lora_state_dict(
                str(path), return_lora_metadata=True, local_files_only=True, unet_config=pipe.unet.config
            )
        except Exception:
            return False
        self._active = "unknown"
        try:
            with _quiet_loading():
                pipe.load_lora_into_unet(
                    state_dict,
                    network_alphas=alphas,
                    unet=pipe.unet,
                    adapter_name=slot,
                    _pipeline=pipe,
                    hotswap=True,
                    metadata=metadata,
                )
                self._reload_text_encoders(state_dict, slot)
        except Exception as err:
            log.warning("hotswap into %s failed (%s); injecting instead", slot, _short(err))
            self._forget_slot(slot)
            del self._resident[lru_member]
            return False
        del self._resident[lru_member]
        log.info("hotswapped LoRA into %s (was %s)", slot, lru_member)
        return True

    def _reload_text_encoders(self, state_dict: dict[str, Any], slot: str) -> None:
        """Load the file's text-encoder weights into the slot's existing layers.

        Diffusers refuses hotswap for text encoders, and deleting and re-injecting the slot there costs more
        than the whole UNet hotswap. peft's set_peft_model_state_dict loads weights into an adapter that is
        already in place, which is all a same-layout file needs. The keys get the handling diffusers' own
        text-encoder loader gives them: the component prefix off, diffusers names to peft names, and no
        ``text_model.`` level for transformers' flattened CLIP.
        """
        from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
        from peft import set_peft_model_state_dict

        for prefix, encoder in self._text_encoders():
            part = {
                k.removeprefix(f"{prefix}."): v for k, v in state_dict.items() if k.startswith(f"{prefix}.")
            }
            held = slot in (getattr(encoder, "peft_config", None) or {})
            if not part and not held:
                continue
            if not part or not held:
                raise RuntimeError(f"the slot and the file disagree on whether {prefix} has a LoRA")
            part = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
            if not hasattr(encoder, "text_model"):
                part = {k.removeprefix("text_model."): v for k, v in part.items()}
            loaded = set_peft_model_state_dict(encoder, part, adapter_name=slot)
            # Every weight of the slot must be overwritten, or the previous member's would stay.
            stale = [k for k in loaded.missing_keys if "lora_" in k and f".{slot}." in k]
            if loaded.unexpected_keys or stale:
                raise RuntimeError(
                    f"{prefix}: {len(loaded.unexpected_keys)} unexpected, {len(stale)} stale keys"
                )

    def _inject(self, slot: str, path: Path) -> None:
        pipe = self.pipe
        self._active = "unknown"
        try:
            # A local file path: diffusers reads it with safetensors (never pickle) and keeps the adapter
            # metadata (rank, alpha) written by save_lora_weights. low_cpu_mem_usage (the default with this
            # peft) creates the LoRA layers empty instead of randomly initialising weights it overwrites.
            with _quiet_loading():
                pipe.load_lora_weights(
                    str(path), adapter_name=slot, local_files_only=True, low_cpu_mem_usage=True
                )
        except Exception as err:
            self._forget_slot(slot)
            log.warning("LoRA file %s failed to load: %s", path.name, _short(err))
            raise LoraLoadError(
                f"the LoRA file does not fit base model {self.base_model} "
                "(it is damaged, or was trained for another base model)"
            ) from None
        denoiser = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
        if slot not in pipe.get_list_adapters().get(denoiser, []):
            # Keys that match no layer of this base load nothing but a warning; refuse instead of rendering
            # a picture of a stranger.
            self._forget_slot(slot)
            raise LoraLoadError(f"the LoRA file has no weights for base model {self.base_model}")
        log.info("loaded LoRA into %s", slot)

    # --- getting one out ------------------------------------------------------------------------------------

    def _forget_slot(self, slot: str) -> None:
        present = {a for names in self.pipe.get_list_adapters().values() for a in names}
        if slot in present:
            with _quiet_loading():
                self.pipe.delete_adapters([slot])
        self._active = "unknown"

    def _delete(self, member: str) -> None:
        self._forget_slot(self._resident.pop(member).slot)
        log.info("evicted LoRA adapter %s", member)


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]
