package reads

import "testing"

// FuzzDecodeList: whatever a server sends, decoding a LIST returns objects
// or an error, never a panic (the fast path for Istio kinds sets struct
// fields by reflection).
func FuzzDecodeList(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualServiceList","metadata":{},"items":[{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"a","namespace":"b"},"spec":{"hosts":["a"],"http":[{"retries":{"attempts":0}}]}}]}`))
	f.Add([]byte(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthenticationList","items":[{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"a"},"spec":{"mtls":{"mode":"STRICT"}},"status":null}]}`))
	f.Add([]byte(`{"apiVersion":"v1","kind":"ServiceList","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}}]}`))
	f.Add([]byte(`{"items":[{"apiVersion":"networking.istio.io/v1","kind":"Nope"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		objs, err := decodeList(body)
		if err == nil {
			for _, o := range objs {
				if o == nil {
					t.Fatal("a nil object in a decoded list")
				}
			}
		}
	})
}
