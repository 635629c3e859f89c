"""What imports nothing of surefoot, so that every package may: the one exception tree (errors),
the phase table and the names of checks, probe kinds and engines (names), durations and sizes
(units), the events phases emit (events), and the masking of secrets (secrets)."""
