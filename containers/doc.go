// Package containers lists and removes the containers crtool restored
// (crtool ps, crtool rm), from the records restore writes.
package containers
