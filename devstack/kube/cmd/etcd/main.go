// Command etcd is the etcd server, built from the etcd version that the pinned Kubernetes
// release requires. etcd's own main package lives in a module with replace directives, which
// `go install` refuses, so this two-line wrapper calls the same entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
