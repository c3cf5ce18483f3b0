package criu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// PrivatePath is where `make deps` installs CRIU when the system's is too
// old. The build may override it with -ldflags "-X ...criu.PrivatePath=...".
var PrivatePath = "/opt/crtool/criu/bin/criu"

// EnvPath names the environment variable that points crtool at a CRIU binary.
const EnvPath = "CRTOOL_CRIU"

// MinVersion is the oldest CRIU crtool accepts: 4.1 cannot dump any TCP or
// UDP socket on kernels >= 6.16 ("Can't get 1:16 opt").
var MinVersion = Version{Major: 4, Minor: 2}

var (
	// ErrNotFound means no CRIU binary was found where crtool looks.
	ErrNotFound = errors.New("criu not found")
	// ErrTooOld means the CRIU binary is older than MinVersion.
	ErrTooOld = errors.New("criu is too old")
	// ErrNotRoot means crtool does not run as root, which CRIU needs.
	ErrNotRoot = errors.New("crtool must run as root")
)

// OpenAsRoot checks that crtool runs as root, then opens CRIU as Open does:
// the preflight of every dump and restore.
func OpenAsRoot(ctx context.Context, explicit string) (*Binary, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: run it with sudo", ErrNotRoot)
	}
	return Open(ctx, explicit)
}

// Version is a CRIU release number.
type Version struct {
	Major, Minor, Sublevel int
}

func (v Version) String() string {
	if v.Sublevel == 0 {
		return fmt.Sprintf("%d.%d", v.Major, v.Minor)
	}
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Sublevel)
}

// AtLeast reports whether v >= o.
func (v Version) AtLeast(o Version) bool {
	if v.Major != o.Major {
		return v.Major > o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor > o.Minor
	}
	return v.Sublevel >= o.Sublevel
}

var versionRe = regexp.MustCompile(`(?m)^Version:\s*(\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads the output of `criu --version`.
func ParseVersion(out string) (Version, error) {
	m := versionRe.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("no version in %q", strings.TrimSpace(out))
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Sublevel, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

// Binary is a located CRIU executable of a known version.
type Binary struct {
	Path    string
	Source  string // how it was found: "--criu", "$CRTOOL_CRIU", "private prefix", "PATH"
	Version Version
}

// Find locates CRIU: the explicit path (the --criu flag), then $CRTOOL_CRIU,
// then PrivatePath, then PATH. It does not check the version; Open does.
func Find(explicit string) (path, source string, err error) {
	if explicit != "" {
		return explicit, "--criu", nil
	}
	if p := os.Getenv(EnvPath); p != "" {
		return p, "$" + EnvPath, nil
	}
	if st, err := os.Stat(PrivatePath); err == nil && !st.IsDir() {
		return PrivatePath, "private prefix", nil
	}
	if p, err := exec.LookPath("criu"); err == nil {
		return p, "PATH", nil
	}
	return "", "", fmt.Errorf("%w (looked at --criu, $%s, %s and PATH): run 'make deps' or pass --criu PATH", ErrNotFound, EnvPath, PrivatePath)
}

// Open finds CRIU as Find does and checks that it runs and is at least
// MinVersion.
func Open(ctx context.Context, explicit string) (*Binary, error) {
	path, source, err := Find(explicit)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %s (from %s): %w: run 'make deps' or pass --criu PATH", ErrNotFound, path, source, err)
	}
	v, err := version(ctx, path, source)
	if err != nil {
		return nil, err
	}
	b := &Binary{Path: path, Source: source, Version: v}
	if !v.AtLeast(MinVersion) {
		return b, fmt.Errorf("%w: %s is CRIU %s, crtool needs %s or newer (older CRIU cannot dump TCP/UDP sockets on recent kernels): run 'make deps' or pass --criu PATH", ErrTooOld, path, v, MinVersion)
	}
	return b, nil
}

// VersionCache remembers the version of a CRIU binary by its identity
// (path, inode, size, mtime), sparing each dump and restore the ~25 ms of
// running criu --version; "" disables it.
var VersionCache = "/run/crtool/criu-version.json"

type cachedVersion struct {
	Path    string  `json:"path"`
	Ino     uint64  `json:"ino"`
	Size    int64   `json:"size"`
	Mtime   int64   `json:"mtime"`
	Version Version `json:"version"`
}

// version reports the version of the CRIU binary at path.
func version(ctx context.Context, path, source string) (Version, error) {
	id, idErr := identify(path)
	if idErr == nil && VersionCache != "" {
		if b, err := os.ReadFile(VersionCache); err == nil {
			var c cachedVersion
			if json.Unmarshal(b, &c) == nil && c.Path == id.Path && c.Ino == id.Ino && c.Size == id.Size && c.Mtime == id.Mtime {
				return c.Version, nil
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return Version{}, fmt.Errorf("run %s --version (from %s): %w: %s", path, source, err, firstLine(string(out)))
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, fmt.Errorf("%s (from %s): %w", path, source, err)
	}
	if idErr == nil && VersionCache != "" {
		id.Version = v
		if b, err := json.Marshal(id); err == nil && os.MkdirAll(filepath.Dir(VersionCache), 0o700) == nil {
			tmp := fmt.Sprintf("%s.%d", VersionCache, os.Getpid())
			if os.WriteFile(tmp, b, 0o600) == nil {
				_ = os.Rename(tmp, VersionCache)
			}
		}
	}
	return v, nil
}

// identify describes the binary path resolves to (a symlink's target).
func identify(path string) (cachedVersion, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return cachedVersion{}, err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return cachedVersion{}, err
	}
	return cachedVersion{Path: real, Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano()}, nil
}

// Check runs CRIU's own feature check (`criu check`) and returns its output.
func (b *Binary) Check(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, b.Path, "check").CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s check: %w", b.Path, err)
	}
	return string(out), nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// KernelRelease is this host's kernel release: recorded beside CRIU's
// version at dump, compared at restore, since CRIU's images depend on both.
func KernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
