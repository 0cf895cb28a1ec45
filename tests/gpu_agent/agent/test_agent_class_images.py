"""Prior-preservation class images are made once and shared by every member: the first training renders them and
stores them under shared/ in the blob store; a later order (another member, another agent, an empty work folder)
downloads them and renders none. Real engine, tiny model, the full photoreal recipe (text-encoder LoRA too)."""

from __future__ import annotations

import json
from collections.abc import Callable

from agent_testkit import AgentThread, EventLog, train_job

from cloud.messages import TrainJob, encode
from cloud.queues import Queues
from storage import keys
from storage.blobs.base import BlobStore
from storage.settings import Settings


def with_prior(job: TrainJob) -> TrainJob:
    params = job.params.model_copy(
        update={
            "prior_preservation": True,
            "train_text_encoder": True,
            "num_class_images": 2,
            "class_image_steps": 2,
            "steps": 2,
        }
    )
    return job.model_copy(update={"params": params, "class_word": "woman"})


def test_class_images_are_rendered_once_then_shared_by_the_next_order(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: Callable[..., AgentThread],
) -> None:
    first, second = with_prior(train_job(blobs, renders=1)), with_prior(train_job(blobs))
    assert first.user_id != second.user_id

    agent = run_agent_thread(make_settings(), queues=queues, blobs=blobs)
    queues.train.send(encode(first))
    done = events.wait_for(lambda e: e.job_id == first.job_id and e.kind == "done", 240, "the first training")
    agent.stop()
    # The done event says which file is the model and which are the pictures to post (typed outputs).
    assert done.model_key == keys.model_key(first.user_id, first.model_id)
    assert done.render_keys == [keys.render_key(first.user_id, first.job_id, 0)]  # its first picture
    assert set(done.output_keys) == {
        done.model_key,
        keys.model_meta_key(first.user_id, first.model_id),
        *done.render_keys,
    }
    shared = sorted(blobs.list("shared/class-images/"))
    assert len(shared) == 2 and all(k.endswith(".png") and "/woman/" in k for k in shared), shared
    stored = {k: blobs.get(k) for k in shared}
    meta = json.loads(blobs.get(keys.model_meta_key(first.user_id, first.model_id)))
    assert meta["class_images_rendered"] == 2 and meta["text_encoder_trained"] is True

    # Another agent with its own empty work folder: the class images come from the blob store.
    agent = run_agent_thread(make_settings(), queues=queues, blobs=blobs)
    queues.train.send(encode(second))
    events.wait_for(lambda e: e.job_id == second.job_id and e.kind == "done", 240, "the second training")
    agent.stop()
    meta = json.loads(blobs.get(keys.model_meta_key(second.user_id, second.model_id)))
    assert meta["class_images_rendered"] == 0
    assert {k: blobs.get(k) for k in blobs.list("shared/class-images/")} == stored
    assert not any(k.startswith("shared/") for k in blobs.list(keys.user_prefix(second.user_id)))
