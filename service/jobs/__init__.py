"""The durable job queue (store), where results live, where scenes may come from, and the runner."""
