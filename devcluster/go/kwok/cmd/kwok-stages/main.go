// Command kwok-stages prints kwok's published default stages as one multi-document YAML.
//
// The kwok binary needs its lifecycle stages in a config file (kwokctl normally supplies them).
// Printing the ones kwok embeds keeps our fake nodes and pods behaving exactly like kwokctl's:
// nodes become Ready and keep their lease, bound pods become Running, deleted pods go away.
package main

import (
	"fmt"
	"strings"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodelease "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
)

func main() {
	stages := []string{
		nodefast.DefaultNodeInit,
		nodelease.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}
	for _, stage := range stages {
		fmt.Println("---")
		fmt.Println(strings.TrimSpace(stage))
	}
}
