"""The agent's ML stack check: an agent that cannot train or render refuses to start instead of taking jobs
and failing every one of them.

It asks the import system whether the packages are installed (``find_spec``, milliseconds) rather than
importing torch and diffusers (seconds): the agent loads them with its first job, and a start must stay fast
enough for SIGTERM-driven supervisors (``photogen all``, docker stop).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import threading

ML_MODULES = ("torch", "diffusers", "peft", "transformers")
# What the first training or render imports; on a busy CPU importing them took 37 s, all of it before a
# member's first picture.
ENGINE_MODULES = (
    "torch",
    "diffusers:StableDiffusionPipeline",  # diffusers loads its modules lazily: touch what a job uses
    "diffusers:UNet2DConditionModel",
    "peft",
    "gpu_agent.engine.training",
    "gpu_agent.engine.render",
    # dlib's face models (1-2 s to load here): the first training's photo checks and likeness need them
    "gpu_agent.photos.faces:models()",
)

log = logging.getLogger(__name__)
_preloading: list[threading.Thread] = []


class MissingMLStack(SystemExit):
    """Stops the agent with one line naming what is missing."""


def missing_ml_modules(modules: tuple[str, ...] = ML_MODULES) -> list[str]:
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder that refuses it, or a broken half-installed package
            found = False
        if not found:
            missing.append(name)
    return missing


def require_ml_stack(modules: tuple[str, ...] = ML_MODULES) -> None:
    missing = missing_ml_modules(modules)
    if missing:
        raise MissingMLStack(
            f"photogen agent: the ML stack is missing ({', '.join(missing)} not installed): install the "
            "agent extra (pip install 'photogen[agent]', torch first) or run the agent image; not starting."
        )


def preload_ml_stack(modules: tuple[str, ...] = ENGINE_MODULES) -> threading.Thread:
    """Import the engine (and load the face models) in a background thread once the agent is up, so the first
    job does not pay for it
    while the start stays fast (the main thread is free to answer SIGTERM). A job that arrives first waits
    for it in ``wait_for_preload`` (diffusers' lazy imports are not safe from two threads at once)."""

    def run() -> None:
        for name in modules:
            module, _, attribute = name.partition(":")
            try:
                loaded = importlib.import_module(module)
                if attribute.endswith("()"):  # a loader to call: "module:function()"
                    getattr(loaded, attribute[:-2])()
                elif attribute:
                    getattr(loaded, attribute)
            except Exception:
                log.warning("preloading %s failed; the first job will import it", name, exc_info=True)
                return

    thread = threading.Thread(target=run, name="preload-ml-stack", daemon=True)
    _preloading.append(thread)
    thread.start()
    return thread


def preloading() -> bool:
    """Whether a preload is still importing (the agent's /healthz says so)."""
    return any(thread.is_alive() for thread in _preloading)


def wait_for_preload() -> None:
    """Return once no preload is running (at once when none was started)."""
    for thread in list(_preloading):
        thread.join()
        with contextlib.suppress(ValueError):  # another waiting thread removed it first
            _preloading.remove(thread)
