"""Faults as a test tool (DESIGN §8): `stream` builds a deterministic raw stream and its fault-free
reference offline; `compare` checks what a run left behind against it, record by record."""
