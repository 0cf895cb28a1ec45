def main() -> None:
    raise SystemExit("photogen: the command line is being assembled")
