package proxystatus

import (
	"strings"
	"testing"
)

const lds, rds = "type.googleapis.com/envoy.config.listener.v3.Listener", "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

func status(id string, nonces map[string][2]string) syncStatus {
	s := syncStatus{ProxyID: id, Resources: map[string]resource{}}
	for t, n := range nonces {
		s.Resources[t] = resource{Sent: n[0], Acked: n[1]}
	}
	return s
}

func proxies(ss ...syncStatus) map[string]Proxy {
	out := map[string]Proxy{}
	for _, s := range ss {
		p := parse(s)
		out[p.ID] = p
	}
	return out
}

func TestParse(t *testing.T) {
	p := parse(status("reviews-v1-7d9f.books", map[string][2]string{lds: {"a", "a"}, rds: {"b", "a"}}))
	if p.Namespace != "books" || !p.Stale {
		t.Fatalf("%+v", p)
	}
	// A pod name with dots: the namespace is after the last one.
	if p := parse(status("web.v2.shop", nil)); p.Namespace != "shop" || p.Stale {
		t.Fatalf("%+v", p)
	}
}

func TestSummarize(t *testing.T) {
	base := proxies(
		status("a.books", map[string][2]string{lds: {"1", "1"}}),
		status("b.books", map[string][2]string{lds: {"1", "1"}}),
		status("c.books", map[string][2]string{lds: {"1", "1"}}),
		status("d.shop", map[string][2]string{lds: {"1", "1"}}),
	)
	now := proxies(
		status("a.books", map[string][2]string{lds: {"2", "2"}}),                  // pushed, acknowledged
		status("b.books", map[string][2]string{lds: {"2", "1"}}),                  // pushed, not acknowledged
		status("c.books", map[string][2]string{lds: {"1", "1"}}),                  // not pushed
		status("d.shop", map[string][2]string{lds: {"2", "2"}}),                   // out of scope
		status("e.books", map[string][2]string{lds: {"9", "9"}, rds: {"9", "9"}}), // connected since
	)
	r := summarize(base, now, Scope{Namespaces: []string{"books"}})
	if strings.Join(r.Updated, ",") != "a.books,e.books" || strings.Join(r.Stale, ",") != "b.books" || strings.Join(r.NotPushed, ",") != "c.books" {
		t.Fatalf("%+v", r)
	}
	want := "2 of 4 proxies acknowledged the new configuration; STALE (sent, not acknowledged): b.books; not pushed by istiod (the change does not concern them): 1"
	if r.String() != want {
		t.Fatalf("%q", r.String())
	}
	if all := summarize(base, now, Scope{All: true}); len(all.Updated) != 3 {
		t.Fatalf("mesh-wide scope: %+v", all)
	}
}
