package format

import (
	"encoding/json"
	"fmt"
	"sort"
)

// ManifestFile is crtool's integrity manifest, the last member of the
// archives it writes: the SHA-256 of every regular member before it,
// computed while they were written. A reader verifies each member as it
// reads it and compares once the manifest arrives, so a streamed restore
// needs no second pass either. Archives without one (Podman's) carry no
// such promise.
const ManifestFile = "crtool.manifest.json"

// ManifestVersion is the version of the manifest this build writes.
const ManifestVersion = 1

// Manifest is the content of ManifestFile.
type Manifest struct {
	Version int `json:"version"`
	// SHA256 maps each regular member's name to its digest, in hex.
	SHA256 map[string]string `json:"sha256"`
}

// ParseManifest decodes ManifestFile.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", ManifestFile, err)
	}
	if m.Version > ManifestVersion {
		return nil, fmt.Errorf("%s version %d is newer than this crtool understands (%d): upgrade crtool", ManifestFile, m.Version, ManifestVersion)
	}
	return &m, nil
}

// Check compares the digests of the regular members read (name -> hex
// SHA-256, the manifest itself left out) with the manifest: every member
// must be listed with its digest, and every listed member must be there.
// The error names the first member that differs.
func (m *Manifest) Check(got map[string]string) error {
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		want, ok := m.SHA256[n]
		switch {
		case !ok:
			return fmt.Errorf("member %q is not in %s", n, ManifestFile)
		case want != got[n]:
			return fmt.Errorf("member %q does not match its SHA-256 in %s: the archive was modified or damaged", n, ManifestFile)
		}
	}
	var missing []string
	for n := range m.SHA256 {
		if _, ok := got[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("member %q listed in %s is missing", missing[0], ManifestFile)
	}
	return nil
}
