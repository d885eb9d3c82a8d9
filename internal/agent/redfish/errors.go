package redfish

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Error is a Redfish error answer: the HTTP status and the first meaningful MessageId of
// error.@Message.ExtendedInfo (or Oem.Hpe.Result.MessageId), with the service's message.
type Error struct {
	Method     string
	Path       string
	StatusCode int
	MessageID  string
	Message    string
	// RetryAfter is the Retry-After header of a 503 that outlasted the retries.
	RetryAfter string
}

// Error reads as one line a person can act on.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: HTTP %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.MessageID != "" {
		fmt.Fprintf(&b, ": %s", e.MessageID)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, " (%s)", e.Message)
	}
	if hint := hintFor(e); hint != "" {
		fmt.Fprintf(&b, "; %s", hint)
	}
	return b.String()
}

// hintFor suggests what to do about common failures.
func hintFor(e *Error) string {
	id := e.MessageID
	switch {
	case e.StatusCode == http.StatusUnauthorized:
		return "check the target's credentials"
	case strings.HasSuffix(id, ".InsufficientPrivilege"):
		return "the account needs the Configure iLO / Update Firmware privilege"
	case strings.HasSuffix(id, ".UpdateInProgress"):
		return "another update is running on this iLO; wait for it to end"
	case e.StatusCode == http.StatusServiceUnavailable:
		return "the iLO is busy (it may be resetting); retry later"
	}
	return ""
}

type extendedInfo struct {
	MessageID string `json:"MessageId"`
	Message   string `json:"Message"`
}

type errorBody struct {
	Error struct {
		Code         string         `json:"code"`
		Message      string         `json:"message"`
		ExtendedInfo []extendedInfo `json:"@Message.ExtendedInfo"`
	} `json:"error"`
	Oem struct {
		Hpe struct {
			Result struct {
				MessageID string `json:"MessageId"`
			} `json:"Result"`
		} `json:"Hpe"`
	} `json:"Oem"`
}

func decodeError(method, path string, resp *http.Response, data []byte) error {
	e := &Error{Method: method, Path: path, StatusCode: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	var body errorBody
	if json.Unmarshal(data, &body) == nil {
		for _, ei := range body.Error.ExtendedInfo {
			if ei.MessageID == "" {
				continue
			}
			// iLO puts a generic Success next to the real cause at times; prefer the cause.
			if e.MessageID == "" || isSuccessID(e.MessageID) {
				e.MessageID, e.Message = ei.MessageID, ei.Message
			}
		}
		if e.MessageID == "" {
			e.MessageID = body.Oem.Hpe.Result.MessageID
		}
		if e.MessageID == "" && body.Error.Code != "" {
			e.MessageID, e.Message = body.Error.Code, body.Error.Message
		}
	}
	return e
}

func isSuccessID(id string) bool { return strings.HasSuffix(id, ".Success") }
