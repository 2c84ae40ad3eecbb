"""The local stack that tests, the demo and the benchmarks run against.

Real components, built from public registries and cached outside the work tree: an Apache
Kafka broker (KRaft, one node) assembled from Maven Central, in two more shapes for the tests
that need them (a three-node cluster, a broker with SASL_SSL, mutual TLS and ACLs); etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, the kubelet (+ helm) built from the
Go module proxy; containerd, runc and podman from the machine's Debian archive, which run the
project's image as real pods. Nothing here needs Docker or a container registry. Not part of
the image.
"""
