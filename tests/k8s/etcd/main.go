// Command etcd is the sandbox's etcd: etcd's own entry point, built from the go.etcd.io/etcd modules at the
// version the sandbox's Kubernetes release expects (Debian's etcd 3.4 is older than Kubernetes supports).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
