package redfish

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// FuzzResponses feeds the client's JSON decoding (update state, firmware inventory, manager,
// system, tasks, and the error bodies of refused requests) what a service on an iLO's address
// may answer: nothing panics or hangs, every call returns, and a refused request is an *Error
// with the status it got. Seeds are an iLO 5's own answers (../shared/testdata/redfish-mockups).
func FuzzResponses(f *testing.F) {
	mock := filepath.Join(shared.Dir(), "testdata", "redfish-mockups", "ilo5-dl325-gen10plus-v2.46")
	for _, p := range []string{"UpdateService", "UpdateService/FirmwareInventory", "Managers/1", "Systems/1", "TaskService"} {
		b, err := os.ReadFile(filepath.Join(mock, p, "index.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(200), b)
	}
	f.Add(uint16(400), []byte(`{"error":{"code":"iLO.0.10.ExtendedInfo","message":"See ext","@Message.ExtendedInfo":[{"MessageId":"Base.1.4.Success"},{"MessageId":"iLO.2.14.InsufficientPrivilege","Message":"no right"}]}}`))
	f.Add(uint16(500), []byte(`{"Oem":{"Hpe":{"Result":{"MessageId":"iLO.2.14.UpdateFailed"}}}}`))
	f.Add(uint16(200), []byte(`{"Oem":{"Hpe":{"State":"Error","FlashProgressPercent":-7,"Result":{"MessageId":"iLO.2.14.UpdateBadParameter"}}}}`))
	f.Add(uint16(200), []byte(`{"Members":[{"@odata.id":"/redfish/v1/UpdateService/FirmwareInventory/1/"},{"@odata.id":"http://192.0.2.1/x"}]}`))
	f.Add(uint16(200), []byte(`{"TaskState":"Exception","Messages":[{"MessageId":"Base.1.4.InternalError"}]}`))
	f.Add(uint16(503), []byte(``))

	// One server and client for every input (a worker runs inputs one at a time): a server
	// per input would spend the run opening loopback connections.
	var (
		mu   sync.Mutex // the race detector does not see loopback I/O order the handler's reads
		code int
		body []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		c, b := code, body
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(c)
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)
	c, err := New(Options{Endpoint: srv.URL, Username: "u", Password: "p", MaxRetries: 1, RequestTimeout: 5 * time.Second, NoRelogin: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status uint16, data []byte) {
		mu.Lock()
		code, body = []int{200, 400, 401, 404, 500, 503}[int(status)%6], data
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		check := func(what string, err error) {
			mu.Lock()
			code := code
			mu.Unlock()
			if code != 200 {
				var re *Error
				if err == nil {
					t.Fatalf("%s: HTTP %d accepted", what, code)
				}
				if errors.As(err, &re) && re.StatusCode != code {
					t.Fatalf("%s: error says HTTP %d, the service sent %d", what, re.StatusCode, code)
				}
			}
		}
		_, err := c.UpdateStatus(ctx)
		check("UpdateStatus", err)
		_, err = c.ILO4UpdateStatus(ctx)
		check("ILO4UpdateStatus", err)
		_, err = c.Task(ctx, "/redfish/v1/TaskService/Tasks/1/")
		check("Task", err)
		_, err = c.FirmwareInventory(ctx)
		check("FirmwareInventory", err)
		_, err = c.Manager(ctx)
		check("Manager", err)
		_, err = c.System(ctx)
		check("System", err)
		if ctx.Err() != nil {
			t.Fatal("the calls did not return in time")
		}
	})
}
