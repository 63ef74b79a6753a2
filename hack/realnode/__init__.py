"""A real Kubernetes node beside the test control plane's kwok nodes (docs/realnode.md)."""
