"""The embedded default: real servers started as child processes on free ports (no Docker, no root),
used by `wattstream run`, the benchmark and the test suite alike."""
