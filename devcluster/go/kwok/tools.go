//go:build tools

// Package tools pins kwok so `go build sigs.k8s.io/kwok/cmd/kwok` uses the
// versions recorded in this module's go.sum.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
