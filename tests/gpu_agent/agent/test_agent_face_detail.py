"""The agent's engine runner passes a RenderJob's face_detail flag and the face-detail settings to the real
Renderer (tiny-sd on the CPU). The tiny model draws noise, so the pass finds no face: what is checked here is
that it ran (the PNG says 0 faces) or did not (the PNG says nothing), not the redraw (test_render_face_detail)."""

from __future__ import annotations

from collections.abc import Callable

from agent_testkit import render_job

from gpu_agent.agent.engine_runner import EngineRunner
from gpu_agent.engine.face_detail import FaceDetailConfig
from gpu_agent.engine.pngmeta import read_png_params
from storage.settings import Settings


def test_the_job_flag_and_the_settings_reach_the_renderer(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(render_face_detail_max_share=0.03, render_face_detail_strength=0.5)
    runner = EngineRunner(settings)
    outcomes = {
        flag: runner.render(
            render_job(face_detail=flag), [], None, progress=lambda *_: None, should_stop=lambda: False
        )
        for flag in (True, False)
    }
    assert runner.renderer("tiny-sd").face_detail == FaceDetailConfig(max_share=0.03, strength=0.5)
    assert read_png_params(outcomes[True].pngs[0]).face_detail == 0
    assert read_png_params(outcomes[False].pngs[0]).face_detail is None
