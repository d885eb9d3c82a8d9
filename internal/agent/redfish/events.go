package redfish

import (
	"context"
	"errors"
	"fmt"
)

// PathSubscriptions is the event subscription collection (EventDestinationCollection).
const PathSubscriptions = "/redfish/v1/EventService/Subscriptions/"

// Subscription is the part of an event subscription the agent reads.
type Subscription struct {
	ODataID string `json:"@odata.id"`
	Context string
}

// Subscribe creates an event subscription (body: Destination, Context, EventTypes or
// RegistryPrefixes) and returns its path, from the Location header or the created resource.
func (c *Client) Subscribe(ctx context.Context, body any) (string, error) {
	var out Subscription
	resp, err := c.Post(ctx, PathSubscriptions, body, &out)
	if err != nil {
		return "", fmt.Errorf("redfish: subscribing to events: %w", err)
	}
	if loc := locationPath(PathSubscriptions, resp.Header.Get("Location")); loc != "" {
		return loc, nil
	}
	if out.ODataID == "" {
		return "", errors.New("redfish: subscribing to events: the service named no subscription")
	}
	return out.ODataID, nil
}

// Subscriptions lists the event subscriptions with their contexts; a service that does not
// expand the collection gives bare links (empty Context).
func (c *Client) Subscriptions(ctx context.Context) ([]Subscription, error) {
	var coll struct{ Members []Subscription }
	if err := c.Get(ctx, PathSubscriptions+"?$expand=.", &coll); err != nil {
		return nil, fmt.Errorf("redfish: listing event subscriptions: %w", err)
	}
	return coll.Members, nil
}
