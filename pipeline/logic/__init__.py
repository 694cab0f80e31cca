"""Pure stream logic (docs/architecture.md): the per-meter plausibility check (`plausible`), debounce and
event-time averages (`windows`) and the per-site PV-surplus controller (`surplus`). Deterministic
functions of readings and their event times, state in and out; the agents, `wattstream backtest`
and the tests run the same code."""
