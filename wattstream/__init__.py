"""The `wattstream` command: one subcommand per process of the pipeline (`wattstream.commands`), the
embedded default that runs them all on one machine (`wattstream.embedded`) and the benchmark
(`wattstream.bench`). The only package that imports `pipeline`, `bridges` and `simulators` together."""
