package main

import (
	"log/slog"

	"herald/subscribers"
	"herald/web"
)

// newSubscriberAdmin returns the operator's side of subscribers for the
// admin API, or nil when the engine lacks the queries it needs (the admin
// API's subscriber routes then answer 503).
func newSubscriberAdmin(subs *subscribers.Service, db database, logger *slog.Logger) web.SubscriberAdmin {
	as, ok := db.(subscribers.AdminStore)
	if !ok {
		logger.Warn("the admin API's subscriber, newsletter and stats routes are not available on this database engine")
		return nil
	}
	return subscribers.NewAdmin(subs, as)
}
