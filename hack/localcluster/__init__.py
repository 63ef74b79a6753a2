"""A local Kubernetes control plane for the tests (etcd, apiserver, controllers, kwok).

`hack/cluster up|down|restart|status|env` runs `python3 -m hack.localcluster`
(docs/cluster.md). Only the standard library: it runs before any virtualenv exists.
"""
