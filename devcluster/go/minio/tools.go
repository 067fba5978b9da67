//go:build tools

// Package tools pins MinIO so `go build github.com/minio/minio` uses the versions
// recorded in this module's go.sum (the S3 store of the BillingExport tests).
package tools

import _ "github.com/minio/minio"
