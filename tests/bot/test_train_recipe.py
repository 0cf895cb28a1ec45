"""One source for the training recipe: a /train order placed through the bot's code path (real order store, queue
and blobs) carries the photoreal recipe of the base model's family; the agent's mapping turns the queued TrainJob
into exactly the TrainConfig that docs/TRAINING.md documents, field by field. And each model gets its own token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agent_part import AgentPart, picture
from sqlmodel import select

from bot.backends import Backends, open_backends
from bot.checks import GuildRules
from bot.services import member_orders as order_service
from cloud.messages import TrainJob
from gpu_agent.agent.engine_runner import train_config
from gpu_agent.engine.training import TrainConfig
from storage import TrainedModel, read_session
from storage.settings import Settings, load_settings
from tests.recipe_doc import FAMILY_COLUMN, PER_ORDER, cell_value, documented_recipe


def backends(tmp: Path, **overrides: object) -> Backends:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp}/photogen.db",
        "queue_url": f"sqlite:///{tmp}/queue.db",
        "blob_url": f"file://{tmp}/blobs",
    }
    values.update(overrides)
    settings: Settings = load_settings(**values)
    return open_backends(settings)


def place_train(b: Backends, user_id: int = 11, name: str = "me") -> TrainJob:
    order_service.place_train_order(
        b,
        guild_id=1,
        channel_id=2,
        user_id=user_id,
        name=name,
        class_word="woman",
        crops=[picture(n) for n in range(5)],
        rules=GuildRules(guild_id=1),
    )
    return AgentPart(b.queues, b.blobs).take_train()


@pytest.mark.parametrize("base_model", sorted(FAMILY_COLUMN))
def test_a_train_order_runs_exactly_the_documented_recipe(tmp_path: Path, base_model: str) -> None:
    b = backends(tmp_path, base_model=base_model)  # every train_* setting unset: the recipe as shipped
    job = place_train(b)
    config = train_config(job, checkpoint_every=b.settings.checkpoint_every_steps)
    documented = documented_recipe(FAMILY_COLUMN[base_model])

    recipe_fields = set(TrainConfig.model_fields) - PER_ORDER
    assert set(documented) == recipe_fields, "docs/TRAINING.md's table lists every TrainConfig field once"
    for field in sorted(recipe_fields):
        actual = getattr(config, field)
        assert actual == cell_value(documented[field], actual), f"{field}: the trainer runs {actual!r}"
    assert config.prior_preservation and config.train_text_encoder  # the two no model ever got before
    assert (config.base_model, config.class_word, config.token) == (base_model, "woman", job.subject_token)


def test_settings_override_the_recipe_and_the_rest_stays(tmp_path: Path) -> None:
    b = backends(
        tmp_path, base_model="tiny-sdxl", train_steps=12, train_class_images=3, train_text_encoder=False
    )
    config = train_config(place_train(b), checkpoint_every=4)
    assert (config.steps, config.num_class_images, config.train_text_encoder) == (12, 3, False)
    assert (config.resolution, config.prior_preservation, config.checkpoint_every) == (1024, True, 4)


def test_each_model_gets_its_own_rare_token_and_old_models_keep_theirs(tmp_path: Path) -> None:
    b = backends(tmp_path)
    from storage import order_store as store_orders
    from storage import transaction

    with transaction(b.engine) as s:  # a model trained before tokens were per model
        store_orders.get_or_create_user(s, 11)
        store_orders.add_model(
            s,
            user_id=11,
            name="old",
            class_word="man",
            subject_token="sks",
            base_model="tiny-sd",
            model_id="old1",
        )
        store_orders.mark_model_ready(s, "old1", "users/11/models/old1/lora.safetensors")
    jobs = [place_train(b, user_id=uid, name=f"m{uid}") for uid in (11, 12, 13)]
    tokens = [job.subject_token for job in jobs]
    assert len(set(tokens) | {"sks"}) == 4, tokens
    for job in jobs:
        assert re.fullmatch(r"[a-z]{4}", job.subject_token)
        TrainConfig(base_model="tiny-sd", token=job.subject_token)  # a token the trainer accepts
    with read_session(b.engine) as s:
        recorded = {m.id: m.subject_token for m in s.exec(select(TrainedModel))}
    assert {job.model_id: recorded[job.model_id] for job in jobs} == {
        j.model_id: j.subject_token for j in jobs
    }

    # Renders read the token from the model: the old model still answers to 'sks'.
    order_service.place_render_order(
        b,
        guild_id=1,
        channel_id=2,
        user_id=11,
        model_id="old1",
        prompt="a photo of {subject}",
        negative_prompt="",
        count=1,
        width=64,
        height=64,
        seed=1,
        guidance=7.0,
        mode="txt2img",
        source_key=None,
        rules=GuildRules(guild_id=1),
    )
    assert AgentPart(b.queues, b.blobs).take_render().subject == "sks man"
