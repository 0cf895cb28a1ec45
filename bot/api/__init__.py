"""The HTTP API (`photogen api`, docs/API.md): the second front door of the order store, beside the Discord bot.

It shares the order store, the blob store and the queues with the bot (bot.backends) and never imports
discord.py (a test checks it in a fresh process). Modules: ``schemas`` (pydantic request/response models),
``routes`` (the operation table: handlers, scopes, documented responses), ``openapi`` (the document built from
that table), ``service`` (blocking order logic), ``auth`` (keys, scopes, rate limit), ``signing`` (webhook
signatures and result links), ``webhooks`` (the delivery loop), ``server`` (the aiohttp app), ``keys_cli``.
"""
