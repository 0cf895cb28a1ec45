"""The ML engine: base models, DreamBooth LoRA training and rendering on diffusers.

Modules (import them directly; this package imports nothing so ``import gpu_agent`` stays torch-free):

- ``models``   — ``load_base_pipeline``, ``pick_device``, ``pick_dtype``, ``model_family``, ``is_test_model``
- ``tiny``     — built-in tiny random pipelines "tiny-sd" / "tiny-sdxl": TEST MODELS THAT DRAW NOISE
- ``training`` — ``TrainConfig``, ``train_lora`` -> ``LoraArtifact``, ``TrainingInterrupted``
- ``render``   — ``Renderer``: one loaded base model, members' LoRAs swapped per render
"""
