package web

// registerRoutes is the whole route table. Every state change is a POST;
// what an email link opens is a GET that only shows a button.
func (s *Server) registerRoutes() {
	e := s.echo

	e.GET("/", s.handleSignupPage)
	e.POST("/subscribe", s.handleSubscribe)

	e.GET("/confirm/:token", s.handleConfirmPage)
	e.POST("/confirm/:token", s.handleConfirm)

	e.GET("/unsubscribe/:token", s.handleUnsubscribePage)
	e.POST("/unsubscribe/:token", s.handleUnsubscribe) // also the RFC 8058 one-click target

	e.GET("/api/v1/subscribers", s.handleListSubscribers, s.requireAdmin)

	e.GET("/healthz", s.handleHealth)
	e.GET("/readyz", s.handleReady)

	e.GET("/static/"+stylesheetFile, s.handleStylesheet)
}
