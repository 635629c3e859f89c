"""What runs a target's containers: one protocol (base), its implementations side by side, each
its own package (compose/, swarm/), and the Docker daemon's API client they share (api)."""
