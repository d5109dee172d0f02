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

	e.GET("/preferences/:token", s.handlePreferencesPage)
	e.POST("/preferences/:token", s.handlePreferences)

	e.GET("/archive", s.handleArchive)
	e.GET("/archive.atom", s.handleArchiveFeed)
	e.GET("/archive/:newsletter", s.handleNewsletterArchive) // also "/archive/{id}.atom", its feed
	e.GET("/archive/:newsletter/:id", s.handleArchiveIssue)

	e.GET("/api/v1/subscribers", s.handleListSubscribers, s.requireAdmin)
	s.setBodyLimit(e.POST("/api/v1/articles", s.handlePostArticle, s.requireAdmin), max(ArticleBodyLimit, s.cfg.BodyLimit))
	e.POST("/api/v1/newsletters/:id/issues", s.handleSendIssue, s.requireAdmin)
	e.GET("/api/v1/issues/:id", s.handleGetIssue, s.requireAdmin)

	e.GET("/healthz", s.handleHealth)
	e.GET("/readyz", s.handleReady)

	e.GET("/static/"+stylesheetFile, s.handleStylesheet)
}
