// Package criu finds a suitable CRIU binary and drives it over its RPC
// protocol (criu swrk), turning its failures into errors that quote its log.
package criu
