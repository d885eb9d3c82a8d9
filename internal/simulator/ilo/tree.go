package ilo

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// tree is the served resource tree of one simulator: decoded JSON documents keyed by their
// normalised path. The documents of the capture (base) are shared by every simulator made from
// it and are never written; a simulator that changes one edits its own copy (own), made on the
// first change, and a simulator that deletes one records it in gone. So a fleet holds one
// parsed capture and, per simulator, only what its clients and flashes changed.
//
// Readers use get and must not write what it returns; writers use edit, put and del. The
// package's TestMain fails when a test run changed a shared capture. The tree is guarded by the
// Sim's mutex.
type tree struct {
	base map[string]map[string]any
	own  map[string]map[string]any
	gone map[string]bool
	// metadata is the $metadata XML, when the capture has one; shared, never written.
	metadata []byte
}

func newTree(base map[string]map[string]any, metadata []byte) *tree {
	return &tree{base: base, own: map[string]map[string]any{}, gone: map[string]bool{}, metadata: metadata}
}

// key normalises a request or link path: real iLO matches paths case-insensitively and with or
// without a trailing slash (see the mockups' README).
func key(p string) string {
	p = strings.ToLower(path.Clean("/" + p))
	return strings.TrimSuffix(p, "/")
}

// loadDocs reads a Redfish-Mockup-Creator tree; dir is /redfish/v1.
func loadDocs(dir string) (docs map[string]map[string]any, metadata []byte, err error) {
	docs = map[string]map[string]any{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, filepath.Dir(p))
		if err != nil {
			return err
		}
		urlPath := "/redfish/v1"
		if rel != "." {
			urlPath += "/" + filepath.ToSlash(rel)
		}
		switch d.Name() {
		case "index.json":
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			docs[key(urlPath)] = doc
		case "index.xml":
			if strings.EqualFold(path.Base(urlPath), "$metadata") {
				metadata, err = os.ReadFile(p)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if docs[key("/redfish/v1")] == nil {
		return nil, nil, fmt.Errorf("%s: no index.json at the root: not a mockup tree", dir)
	}
	return docs, metadata, nil
}

// get returns the document at p for reading only, or nil.
func (t *tree) get(p string) map[string]any {
	k := key(p)
	if d, ok := t.own[k]; ok {
		return d
	}
	if t.gone[k] {
		return nil
	}
	return t.base[k]
}

// edit returns the document at p for writing, or nil: a shared document is copied first.
func (t *tree) edit(p string) map[string]any {
	k := key(p)
	if d, ok := t.own[k]; ok {
		return d
	}
	if t.gone[k] || t.base[k] == nil {
		return nil
	}
	d := deepCopy(t.base[k]).(map[string]any)
	t.own[k] = d
	return d
}

func (t *tree) put(p string, doc map[string]any) {
	k := key(p)
	t.own[k] = doc
	delete(t.gone, k)
}

func (t *tree) del(p string) {
	k := key(p)
	delete(t.own, k)
	if _, ok := t.base[k]; ok {
		t.gone[k] = true
	}
}

// flatten returns the documents this tree serves as one map, sharing the unchanged ones with
// the base: a new base.
func (t *tree) flatten() map[string]map[string]any {
	out := make(map[string]map[string]any, len(t.base)+len(t.own))
	for k, d := range t.base {
		if !t.gone[k] {
			out[k] = d
		}
	}
	for k, d := range t.own {
		out[k] = d
	}
	return out
}

// field walks nested objects from doc for reading; a missing one reads as an empty object.
func field(doc map[string]any, keys ...string) map[string]any {
	cur := doc
	for _, k := range keys {
		cur, _ = cur[k].(map[string]any)
	}
	return cur
}

// obj walks nested objects from doc, creating them as needed.
func obj(doc map[string]any, keys ...string) map[string]any {
	cur := doc
	for _, k := range keys {
		next, ok := cur[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[k] = next
		}
		cur = next
	}
	return cur
}

// memberPaths lists the @odata.id of a collection's members.
func memberPaths(doc map[string]any) []string {
	ms, _ := doc["Members"].([]any)
	var out []string
	for _, m := range ms {
		if mm, ok := m.(map[string]any); ok {
			if id, ok := mm["@odata.id"].(string); ok {
				out = append(out, id)
			}
		}
	}
	return out
}

// inventory returns the paths of the firmware inventory members, in collection order.
func (t *tree) inventory() []string {
	var out []string
	for _, p := range memberPaths(t.get("/redfish/v1/UpdateService/FirmwareInventory")) {
		if t.get(p) != nil {
			out = append(out, p)
		}
	}
	return out
}

// addMember appends a link to a collection and stores the member.
func (t *tree) addMember(collPath, memberPath string, doc map[string]any) {
	coll := t.edit(collPath)
	if coll == nil {
		coll = map[string]any{"@odata.id": collPath, "Members": []any{}}
		t.put(collPath, coll)
	}
	ms, _ := coll["Members"].([]any)
	ms = append(ms, map[string]any{"@odata.id": memberPath})
	coll["Members"] = ms
	coll["Members@odata.count"] = len(ms)
	t.put(memberPath, doc)
}

// removeMember drops a member and its link.
func (t *tree) removeMember(collPath, memberPath string) {
	t.del(memberPath)
	coll := t.edit(collPath)
	if coll == nil {
		return
	}
	ms, _ := coll["Members"].([]any)
	out := ms[:0:0]
	for _, m := range ms {
		if mm, ok := m.(map[string]any); ok && key(fmt.Sprint(mm["@odata.id"])) == key(memberPath) {
			continue
		}
		out = append(out, m)
	}
	coll["Members"] = out
	coll["Members@odata.count"] = len(out)
}

// deepCopy copies a JSON document so that it can be encoded outside the lock.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}
