// Package pageserver speaks CRIU's page-server protocol: it receives the
// memory pages a dump sends over a socket and writes them as CRIU's own
// pagemap and pages images, so that pages never need a staging copy.
package pageserver
