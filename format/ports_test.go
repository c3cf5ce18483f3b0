package format

import (
	"reflect"
	"testing"
)

func TestParsePortMapping(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PortMapping
		bad  bool
	}{
		{in: "8080:80", want: PortMapping{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		{in: "5353:53/udp", want: PortMapping{HostPort: 5353, ContainerPort: 53, Protocol: "udp"}},
		{in: "127.0.0.1:8080:80/tcp", want: PortMapping{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		{in: "80", bad: true},
		{in: "0:80", bad: true},
		{in: "8080:70000", bad: true},
		{in: "8080:80/sctp", bad: true},
		{in: "::1:8080:80", bad: true},
		{in: "8000-8010:80", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePortMapping(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParsePortMapping(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParsePortMapping(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if back, err := ParsePortMapping(got.String()); err != nil || back != got {
				t.Fatalf("String() %q does not parse back: %+v, %v", got.String(), back, err)
			}
		})
	}
}

func TestMergePorts(t *testing.T) {
	rec := []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 8443, ContainerPort: 443, Protocol: "tcp"}}
	extra := []PortMapping{{HostPort: 8080, ContainerPort: 8000, Protocol: "tcp"}, {HostPort: 8080, ContainerPort: 80, Protocol: "udp"}}
	got := MergePorts(rec, extra)
	want := []PortMapping{rec[1], extra[0], extra[1]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MergePorts = %+v, want %+v", got, want)
	}
}

func TestPortsFromPodman(t *testing.T) {
	got := PortsFromPodman([]PodmanPortMapping{
		{ContainerPort: 8080, HostPort: 18080, Range: 1, Protocol: "tcp"},
		{HostIP: "127.0.0.1", ContainerPort: 53, HostPort: 5353, Range: 2, Protocol: "tcp,udp"},
	})
	want := []PortMapping{
		{HostPort: 18080, ContainerPort: 8080, Protocol: "tcp"},
		{HostIP: "127.0.0.1", HostPort: 5353, ContainerPort: 53, Protocol: "tcp"},
		{HostIP: "127.0.0.1", HostPort: 5354, ContainerPort: 54, Protocol: "tcp"},
		{HostIP: "127.0.0.1", HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
		{HostIP: "127.0.0.1", HostPort: 5354, ContainerPort: 54, Protocol: "udp"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PortsFromPodman = %+v, want %+v", got, want)
	}
	if back := PortsFromPodman(PortsToPodman(want)); !reflect.DeepEqual(back, want) {
		t.Fatalf("PortsToPodman does not round-trip: %+v", back)
	}
}
