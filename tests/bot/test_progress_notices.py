"""What a member sees on the status message while the GPU works: previews, a reclaimed GPU, the end at 100 %.

The events come from the agent's own Reporter (gpu_agent.agent.report), sent over the real events queue; the bot
and Discord (the project's Discord-compatible server) are real.
"""

from __future__ import annotations

import asyncio

import agent_part
from studio import Studio

from cloud.messages import Progress
from gpu_agent.agent.report import Reporter
from storage import keys


async def test_a_reclaimed_gpu_is_shown_then_cleared_and_progress_ends_at_100(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "on a beach", "count": 1})
    status = await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = await asyncio.to_thread(st.agent.take_render)
    reporter = Reporter(st.b.queues.events, st.b.blobs, job, agent_id="spot-1", progress_every_s=0)
    reporter.started(0, 20)
    reporter.progress(7, 20)
    reporter.preempted(7, 20)  # the spot notice: the agent released the job
    paused = await st.sim.wait_for_message(
        st.channel, lambda m: m.id == status.id and "Paused" in str(m.embeds)
    )
    text = str(paused.embeds)
    assert "The GPU was reclaimed" in text and "another machine" in text
    assert "Paused: Paused" not in text  # the field's name says "Paused" once

    again = Reporter(st.b.queues.events, st.b.blobs, job, agent_id="spot-2", progress_every_s=0)
    again.started(0, 20)  # another machine took it over
    again.progress(12, 20)
    resumed = await st.sim.wait_for_message(
        st.channel, lambda m: m.id == status.id and "step 12/20" in str(m.embeds)
    )
    assert "Paused" not in str(resumed.embeds)

    picture = keys.render_key(job.user_id, job.job_id, 0)
    st.b.blobs.put(picture, agent_part.picture(1), content_type="image/png")
    # the real agent's done event carries the last step (gpu_agent.agent.worker), so the bar ends full
    again.emit("done", output_keys=[picture], progress=Progress(step=20, total=20))
    final = await st.sim.wait_for_message(
        st.channel, lambda m: m.id == status.id and "step 20/20" in str(m.embeds)
    )
    assert "Paused" not in str(final.embeds)
