"""`wattstream bench`: the pipeline's throughput beside a plain aiokafka baseline (`throughput`), the
end-to-end latency from a meter's MQTT message to a charger's (`latency`), the load that runs beside
it (`load`) and py-spy profiles of the worker (`profile`). See docs/performance.md."""
