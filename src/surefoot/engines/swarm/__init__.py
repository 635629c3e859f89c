"""The swarm engine: a stack on a Docker Swarm, through its manager (engine); the swarm asked and
changed (client), what it says judged (state), the stack file (stackfile), its command lines
(argv), its preflight checks (checks), and the phases it does its own way (phases)."""
