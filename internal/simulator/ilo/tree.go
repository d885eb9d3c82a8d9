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

// tree is the served resource tree: decoded JSON documents keyed by their normalised path.
// It is guarded by the Sim's mutex.
type tree struct {
	docs map[string]map[string]any
	// metadata is the $metadata XML, when the capture has one.
	metadata []byte
}

// key normalises a request or link path: real iLO matches paths case-insensitively and with or
// without a trailing slash (see the mockups' README).
func key(p string) string {
	p = strings.ToLower(path.Clean("/" + p))
	return strings.TrimSuffix(p, "/")
}

// loadTree reads a Redfish-Mockup-Creator tree; dir is /redfish/v1.
func loadTree(dir string) (*tree, error) {
	t := &tree{docs: map[string]map[string]any{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
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
			t.docs[key(urlPath)] = doc
		case "index.xml":
			if strings.EqualFold(path.Base(urlPath), "$metadata") {
				t.metadata, err = os.ReadFile(p)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if t.docs[key("/redfish/v1")] == nil {
		return nil, fmt.Errorf("%s: no index.json at the root: not a mockup tree", dir)
	}
	return t, nil
}

func (t *tree) get(p string) map[string]any { return t.docs[key(p)] }

func (t *tree) put(p string, doc map[string]any) { t.docs[key(p)] = doc }

func (t *tree) del(p string) { delete(t.docs, key(p)) }

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

// inventory returns the firmware inventory members, in collection order.
func (t *tree) inventory() []map[string]any {
	coll := t.get("/redfish/v1/UpdateService/FirmwareInventory")
	if coll == nil {
		return nil
	}
	var out []map[string]any
	for _, p := range memberPaths(coll) {
		if d := t.get(p); d != nil {
			out = append(out, d)
		}
	}
	return out
}

// addMember appends a link to a collection and stores the member.
func (t *tree) addMember(collPath, memberPath string, doc map[string]any) {
	coll := t.get(collPath)
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
	coll := t.get(collPath)
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
