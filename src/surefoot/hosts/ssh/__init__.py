"""A server over SSH: ssh's command lines (args), the shared connection (connection), commands
run there as on this machine (remote), the project folder mirrored there (mirror), and the
deployment lock held there (lock)."""
