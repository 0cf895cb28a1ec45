"""The composition root: the `photogen` command, the offline demo and the local Discord-compatible server.

Nothing in bot/, cloud/, gpu_agent/ or storage/ imports this package.
"""
