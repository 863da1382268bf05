"""Not kiosk runtime: install and test harnesses (the telemetry start-up hook, a loopback
Milvus server in its own network namespace, a loopback Ray cluster). Nothing in the runtime
imports them; tests, benches and operators run them."""
