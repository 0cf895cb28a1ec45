"""The CLI's own argument checks: a wrong value stops at the parser with the option named, before any start-up."""

from __future__ import annotations

import pytest

from photogen.cli import build_parser


@pytest.mark.parametrize("wait", ["-1", "nan", "forever", "86401"])
def test_agent_once_refuses_a_wait_that_is_not_a_number_of_seconds(
    wait: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["agent", "--once", "--wait", wait])
    assert stop.value.code == 2
    assert "--wait" in capsys.readouterr().err


def test_agent_once_takes_a_wait_in_seconds() -> None:
    args = build_parser().parse_args(["agent", "--once", "--wait", "2.5"])
    assert args.once and args.wait == 2.5
    assert build_parser().parse_args(["agent"]).once is False
