"""Faults as a test tool (docs/development.md): `stream` builds a deterministic raw stream and its fault-free
reference offline; `compare` checks what a run left behind against it, record by record."""
