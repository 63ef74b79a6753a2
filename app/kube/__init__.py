"""What the session server tells Kubernetes: its activity, on the session's own Lease."""
