package capability

import (
	"strings"
	"testing"
)

func TestFromHex(t *testing.T) {
	for _, tc := range []struct{ hex, want string }{
		{"0000000000000401", "CAP_CHOWN,CAP_NET_BIND_SERVICE"},
		{"0000000000000000", ""},
		{"0000010000000000", "CAP_CHECKPOINT_RESTORE"},
	} {
		if got := FromHex(tc.hex); strings.Join(got, ",") != tc.want {
			t.Errorf("FromHex(%s) = %v, want %s", tc.hex, got, tc.want)
		}
	}
	if FromHex("zz") != nil {
		t.Error("FromHex of garbage is not nil")
	}
}
