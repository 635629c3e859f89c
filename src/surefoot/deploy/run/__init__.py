"""Running a deployment: the runner (the only writer of the state store), the scheduler of phases
side by side, the checkpoint bracket around every unit of work, hooks, rollback, notifications,
and the fleet (one rollout over several targets)."""
