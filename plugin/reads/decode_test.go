package reads

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	istiokube "istio.io/istio/pkg/kube"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
)

// codecList is what the list decoded to before decodeIstioList: Istio's codec.
func codecList(body []byte) ([]runtime.Object, error) {
	obj, _, err := istiokube.IstioCodec.UniversalDeserializer().Decode(body, nil, nil)
	if err != nil {
		return nil, err
	}
	return meta.ExtractList(obj)
}

// Every Istio object in the fixtures of Istio's analyzer tests and its
// samples decodes through protojson to what Istio's codec makes of it:
// same metadata, equal specs and statuses. An object the codec cannot read
// is not read by the fast path either.
func TestIstioListsDecodeAsTheCodecDecodesThem(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	if err != nil {
		t.Fatalf("go list istio.io/istio: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	var files []string
	for _, dir := range []string{"pkg/config/analysis/analyzers/testdata", "samples"} {
		filepath.WalkDir(filepath.Join(mod, dir), func(p string, d os.DirEntry, err error) error { //nolint:errcheck // a missing directory finds nothing, checked below
			if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				files = append(files, p)
			}
			return nil
		})
	}
	compared, refused := 0, 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := manifest.Decode(data)
		if err != nil {
			continue // templates and partial documents
		}
		for _, u := range objs {
			gvk := u.GroupVersionKind()
			if !strings.HasSuffix(gvk.Group, "istio.io") {
				continue
			}
			item, _ := json.Marshal(u.Object)
			body := []byte(`{"apiVersion":"` + u.GetAPIVersion() + `","kind":"` + u.GetKind() + `List","metadata":{},"items":[` + string(item) + `]}`)
			want, werr := codecList(body)
			got, ok := decodeIstioList(body)
			where := filepath.Base(f) + ": " + u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
			if werr != nil {
				refused++
				if ok {
					t.Errorf("%s: the codec refuses it (%v), the fast path reads it", where, werr)
				}
				continue
			}
			if !ok {
				t.Errorf("%s: the codec reads it, the fast path does not", where)
				continue
			}
			compared++
			equal(t, where, got[0], want[0])
		}
	}
	if compared < 300 {
		t.Fatalf("compared %d objects (%d refused by both) from %d files: expected Istio's fixtures and samples", compared, refused, len(files))
	}
	t.Logf("%d objects decode alike, %d refused by both, from %d files", compared, refused, len(files))
}

// equal compares two typed Istio objects field by field: metadata with
// DeepEqual, the protobuf messages with proto.Equal.
func equal(t *testing.T, where string, got, want runtime.Object) {
	t.Helper()
	g, w := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	if g.Type() != w.Type() {
		t.Errorf("%s: type %s, want %s", where, g.Type(), w.Type())
		return
	}
	for i := range g.NumField() {
		name := g.Type().Field(i).Name
		gf, wf := g.Field(i).Addr().Interface(), w.Field(i).Addr().Interface()
		if gm, ok := gf.(proto.Message); ok {
			if !proto.Equal(gm, wf.(proto.Message)) {
				t.Errorf("%s: %s\n got %v\nwant %v", where, name, gm, wf)
			}
		} else if !reflect.DeepEqual(gf, wf) {
			t.Errorf("%s: %s\n got %+v\nwant %+v", where, name, gf, wf)
		}
	}
}

// A list the fast path does not take (built-in kinds as JSON, Gateway
// API kinds, protobuf bodies) decodes through the codec as before.
func TestOtherListsKeepTheCodec(t *testing.T) {
	for _, body := range []string{
		`{"apiVersion":"v1","kind":"ServiceList","metadata":{},"items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"b"},"spec":{"ports":[{"port":80}]}}]}`,
		`{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRouteList","metadata":{},"items":[{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"a","namespace":"b"},"spec":{"hostnames":["x"]}}]}`,
	} {
		if _, ok := decodeIstioList([]byte(body)); ok {
			t.Errorf("fast path took %s", body[:60])
		}
		objs, err := decodeList([]byte(body))
		if err != nil || len(objs) != 1 {
			t.Errorf("decodeList = %v, %v", objs, err)
		}
	}
}
