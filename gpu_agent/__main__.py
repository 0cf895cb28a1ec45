"""``python -m gpu_agent`` / ``photogen-agent``: run one GPU agent with the settings from the environment."""

from __future__ import annotations

import logging


def main() -> None:
    from storage.settings import load_settings

    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gpu_agent.agent import run_agent

    run_agent(settings)


if __name__ == "__main__":
    main()
