"""What the read-only commands print: where a deployment stands (status), the releases (history)
and the page of timelines (timeline)."""
