"""Thin Faust agents: read, call the pure logic, produce, ack. Registered by functions taking the app.

One agent per input topic (every agent boundary costs ≈ 140 µs of CPU per event), each
with concurrency 1 so that an offset is never committed past an event still in flight.
"""
