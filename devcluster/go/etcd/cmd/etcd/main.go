// Command etcd runs the etcd server through its library entry point.
//
// `go install go.etcd.io/etcd/server/v3` is refused because etcd's go.mod uses
// relative replace directives; a module of our own that calls etcdmain.Main
// builds the same server from published modules.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
