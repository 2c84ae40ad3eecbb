"""The local stack that tests, the demo and the benchmarks run against.

Real components, built from public registries and cached outside the work tree: an Apache
Kafka broker (KRaft, one node) assembled from Maven Central, in two more shapes for the tests
that need them (a three-node cluster, a broker with SASL_SSL, mutual TLS and ACLs), and etcd +
kube-apiserver + kube-controller-manager (+ helm) built from the Go module proxy. Nothing here
needs Docker.
"""
