"""The compose engine: docker compose and one Docker daemon (adapter), its command lines (argv),
its answers read (model), the daemon's quick answers (daemon), the commands asked ahead (ahead),
and images built here that reach a server (delivery, ship)."""
