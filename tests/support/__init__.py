"""Real components for the tests: kube-apiserver + etcd, nginx, TLS material."""
