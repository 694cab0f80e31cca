"""The `wattstream` subcommands that have outgrown `wattstream.__main__`, one module each."""
