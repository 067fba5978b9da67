//go:build tools

// Package tools pins Kueue so `go build sigs.k8s.io/kueue/cmd/kueue` uses the
// versions recorded in this module's go.sum.
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
