"""Delivery: the outbox written with the log entries, the worker that drains it, the transport.

Only this package talks to partners over HTTP (architecture: the transport is the only
`aiohttp.ClientSession` user).
"""
