//go:build tools

// Package tools records the Dapr commands this module exists to build, so
// that `go mod tidy` keeps their dependencies in go.mod and go.sum. The
// file is never compiled (main packages cannot be imported); build with
// scripts/build-dapr.sh.
package tools

import (
	_ "github.com/dapr/dapr/cmd/daprd"
	_ "github.com/dapr/dapr/cmd/placement"
	_ "github.com/dapr/dapr/cmd/scheduler"
)
