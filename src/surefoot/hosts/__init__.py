"""The machines a deployment reaches: the Host seam (base), this machine (local), a server over
SSH (ssh/), what a host's measurements mean (checks) and what it lacks (prereqs)."""
