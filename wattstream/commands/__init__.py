"""The `wattstream` subcommands, one module each: its `add_parser(sub)` declares the arguments, the settings
it reads (listed by its `--help`) and the function that runs it (`common.add_command`)."""
