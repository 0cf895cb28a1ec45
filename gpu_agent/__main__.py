def main() -> None:
    raise SystemExit("gpu_agent: not assembled yet")
