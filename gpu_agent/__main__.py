"""``python -m gpu_agent`` / ``photogen-agent``: run one GPU agent with the settings from the environment."""

from __future__ import annotations

import argparse
import logging

DESCRIPTION = """Run one Photogen GPU agent: it long-polls the train and render queues, trains LoRAs and
renders images, and stops (draining its job) on SIGTERM, SIGINT or a spot interruption notice.
All configuration comes from the environment and .env (QUEUE_URL, BLOB_URL, DEVICE, AGENT_KINDS, IMDS_MODE
...); docs/SETTINGS.md lists every setting. It needs the ML stack (pip install 'photogen[agent]')."""


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m gpu_agent", description=DESCRIPTION).parse_args(argv)
    from storage.settings import load_settings

    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gpu_agent.agent import run_agent

    run_agent(settings)


if __name__ == "__main__":
    main()
