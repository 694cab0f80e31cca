"""Simulated meters and devices for the embedded default, the demo stack and the tests: MQTT meters and
a PV site (`meters`), serial and network devices on pseudo-terminals and sockets (`devices`) and a
Wi-SUN dongle speaking SKSTACK IP with a B-route meter behind it (`rl7023`)."""
