"""The `wattstream` subcommands that have outgrown `pipeline.__main__`, one module each."""
