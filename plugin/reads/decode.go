package reads

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istiokube "istio.io/istio/pkg/kube"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// decodeList decodes a LIST response into typed objects, without their
// managedFields: no analyzer reads them (Istio's own caches drop them
// too), and they are a large share of every object.
func decodeList(body []byte) ([]runtime.Object, error) {
	items, ok := decodeIstioList(body)
	if !ok {
		obj, _, err := istiokube.IstioCodec.UniversalDeserializer().Decode(body, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding the list: %w", err)
		}
		if items, err = meta.ExtractList(obj); err != nil {
			return nil, err
		}
	}
	for _, it := range items {
		if m, err := meta.Accessor(it); err == nil {
			m.SetManagedFields(nil)
		}
	}
	return items, nil
}

// protobufPrefix starts a Kubernetes protobuf body (built-in kinds).
var protobufPrefix = []byte("k8s\x00")

func isProtobuf(body []byte) bool { return bytes.HasPrefix(body, protobufPrefix) }

var specDecoder = protojson.UnmarshalOptions{DiscardUnknown: true}

// decodeIstioList decodes a JSON list of an Istio kind, whose spec and
// status are protobuf messages, with protojson. Istio's types decode them
// through the legacy jsonpb, which parses every level into maps of raw
// JSON first: most of a read's CPU, on two cores shared with the API
// server. Both discard unknown fields and read the same JSON names,
// enums and well-known types. ok is false, for the codec to decode the
// list as before, when the body is not such a list or any item does not
// decode: what this path cannot read exactly is not read by it at all.
func decodeIstioList(body []byte) (items []runtime.Object, ok bool) {
	if isProtobuf(body) {
		return nil, false
	}
	var list struct {
		Items []struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta `json:"metadata"`
			Spec            json.RawMessage   `json:"spec"`
			Status          json.RawMessage   `json:"status"`
		} `json:"items"`
	}
	if err := utiljson.Unmarshal(body, &list); err != nil {
		return nil, false
	}
	items = make([]runtime.Object, 0, len(list.Items))
	for _, it := range list.Items {
		obj, err := istiokube.IstioScheme.New(it.GroupVersionKind())
		if err != nil {
			return nil, false
		}
		v := reflect.ValueOf(obj).Elem()
		spec, specOK := message(v, "Spec")
		status, statusOK := message(v, "Status")
		typeMeta, objectMeta := v.FieldByName("TypeMeta"), v.FieldByName("ObjectMeta")
		if !specOK || !statusOK || !typeMeta.IsValid() || typeMeta.Type() != reflect.TypeOf(it.TypeMeta) ||
			!objectMeta.IsValid() || objectMeta.Type() != reflect.TypeOf(it.Metadata) {
			return nil, false // not an Istio kind (Gateway API types are plain structs)
		}
		typeMeta.Set(reflect.ValueOf(it.TypeMeta))
		objectMeta.Set(reflect.ValueOf(it.Metadata))
		for _, f := range []struct {
			raw json.RawMessage
			m   proto.Message
		}{{it.Spec, spec}, {it.Status, status}} {
			if len(f.raw) == 0 || string(f.raw) == "null" {
				continue
			}
			if err := specDecoder.Unmarshal(f.raw, f.m); err != nil {
				return nil, false
			}
		}
		items = append(items, obj)
	}
	return items, true
}

// message is the address of v's field name if it is a protobuf message.
func message(v reflect.Value, name string) (proto.Message, bool) {
	f := v.FieldByName(name)
	if !f.IsValid() || !f.CanAddr() {
		return nil, false
	}
	m, ok := f.Addr().Interface().(proto.Message)
	return m, ok
}
