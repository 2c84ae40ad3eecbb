"""The local stack that tests, the demo and the benchmarks run against.

Real components, built from public registries and cached outside the work tree: an Apache
Kafka broker (KRaft, one node) assembled from Maven Central, and etcd + kube-apiserver +
kube-controller-manager (+ helm) built from the Go module proxy. Nothing here needs Docker.
"""
