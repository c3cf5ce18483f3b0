package podman

import "testing"

func TestKubeName(t *testing.T) {
	crio := map[string]string{
		"io.container.manager":         "cri-o",
		"io.kubernetes.cri-o.Metadata": `{"name":"sidecar","attempt":1}`,
		"io.kubernetes.pod.name":       "web-0",
		"io.kubernetes.pod.namespace":  "shop",
	}
	without := func(k string) map[string]string {
		m := map[string]string{}
		for kk, v := range crio {
			if kk != k {
				m[kk] = v
			}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want string
	}{
		{"cri-o", crio, "web-0_shop-sidecar"},
		{"container label only", func() map[string]string {
			m := without("io.kubernetes.cri-o.Metadata")
			m["io.kubernetes.container.name"] = "app"
			return m
		}(), "web-0_shop-app"},
		{"no pod", without("io.kubernetes.pod.name"), ""},
		{"no namespace", without("io.kubernetes.pod.namespace"), ""},
		{"not cri-o", without("io.container.manager"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kubeName(tc.ann); got != tc.want {
				t.Errorf("kubeName = %q, want %q", got, tc.want)
			}
		})
	}
}
