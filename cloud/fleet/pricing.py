"""Instance prices as data (cloud/fleet/prices.json, or a file named by FLEET_PRICES_FILE) and cost per order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PRICES = Path(__file__).with_name("prices.json")


@dataclass(frozen=True)
class InstancePrice:
    instance_type: str
    gpu: str
    on_demand: float  # USD per hour
    spot: float

    def per_second(self, market: str = "spot") -> float:
        return (self.spot if market == "spot" else self.on_demand) / 3600.0


def load_prices(path: str | Path | None = None) -> dict[str, InstancePrice]:
    data = json.loads(Path(path or DEFAULT_PRICES).read_text())
    prices = {}
    for name, row in data["instances"].items():
        if row["on_demand"] <= 0 or row["spot"] <= 0:
            raise ValueError(f"{name}: prices must be positive")
        prices[name] = InstancePrice(name, row["gpu"], float(row["on_demand"]), float(row["spot"]))
    return prices


def job_cost(gpu_seconds: float, price: InstancePrice, market: str = "spot") -> float:
    """Dollars for ``gpu_seconds`` of one instance's time."""
    if gpu_seconds < 0:
        raise ValueError("gpu_seconds must be >= 0")
    return gpu_seconds * price.per_second(market)
