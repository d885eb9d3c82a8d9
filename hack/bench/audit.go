package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// auditPolicy logs every request at level Metadata (who, verb, resource; no bodies), once
// it is answered: what the scale section counts requests from, rather than from our code.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// auditEvent is the part of an audit.k8s.io/v1 Event the count reads.
type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	UserAgent string `json:"userAgent"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	RequestReceived time.Time `json:"requestReceivedTimestamp"`
}

// requestCount is the requests of one client (the audit log's user) in a window, by verb and
// by verb and resource.
type requestCount struct {
	byVerb     map[string]int
	byResource map[string]int       // "verb resource[/subresource]"
	first      map[string]time.Time // the first request of each "verb resource[/subresource]"
}

func (c requestCount) writes() int {
	return c.byVerb["create"] + c.byVerb["update"] + c.byVerb["patch"] + c.byVerb["delete"] + c.byVerb["deletecollection"]
}

func (c requestCount) reads() int {
	return c.byVerb["get"] + c.byVerb["list"] + c.byVerb["watch"]
}

// countAudit counts the requests each user sent between from and to (their receipt time). A
// watch is counted once, when its response starts; every other request when it completes.
func countAudit(r io.Reader, from, to time.Time) (map[string]requestCount, error) {
	out := map[string]requestCount{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		long := e.Verb == "watch"
		if (long && e.Stage != "ResponseStarted") || (!long && e.Stage != "ResponseComplete") {
			continue
		}
		if e.RequestReceived.Before(from) || e.RequestReceived.After(to) {
			continue
		}
		c, ok := out[e.User.Username]
		if !ok {
			c = requestCount{byVerb: map[string]int{}, byResource: map[string]int{}, first: map[string]time.Time{}}
			out[e.User.Username] = c
		}
		c.byVerb[e.Verb]++
		res := "(no resource)"
		if e.ObjectRef != nil {
			res = e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				res += "/" + e.ObjectRef.Subresource
			}
		}
		k := e.Verb + " " + res
		c.byResource[k]++
		if at, ok := c.first[k]; !ok || e.RequestReceived.Before(at) {
			c.first[k] = e.RequestReceived
		}
	}
	return out, sc.Err()
}

func countAuditFile(path string, from, to time.Time) (map[string]requestCount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return countAudit(f, from, to)
}

// perTarget formats counts divided by n, largest first: "patch 1.90, create 1.00".
func perTarget(counts map[string]int, n int, keep func(string) bool) string {
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range counts {
		if keep == nil || keep(k) {
			kvs = append(kvs, kv{k, v})
		}
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].v != kvs[j].v {
			return kvs[i].v > kvs[j].v
		}
		return kvs[i].k < kvs[j].k
	})
	var parts []string
	for _, e := range kvs {
		parts = append(parts, fmt.Sprintf("%s %.2f", e.k, float64(e.v)/float64(n)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func isWriteVerb(k string) bool {
	v, _, _ := strings.Cut(k, " ")
	switch v {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}
