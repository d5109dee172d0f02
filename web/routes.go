package web

// registerRoutes is the whole route table. Every state change is a POST;
// what an email link opens is a GET that only shows a button.
func (s *Server) registerRoutes() {
	e := s.echo

	e.GET("/", s.handleSignupPage)
	e.POST("/subscribe", s.handleSubscribe, s.allowCORS)
	e.OPTIONS("/subscribe", s.handleSubscribePreflight) // CORS preflight of the JSON signup
	e.GET("/altcha/challenge", s.handleAltchaChallenge) // proof of work for the signup, when asked

	e.GET("/confirm/:token", s.handleConfirmPage)
	e.POST("/confirm/:token", s.handleConfirm)

	e.GET("/unsubscribe/:token", s.handleUnsubscribePage)
	e.POST("/unsubscribe/:token", s.handleUnsubscribe) // also the RFC 8058 one-click target

	// The reader's pages: a signed token in the path, no cookie. Every
	// POST below carries a form token from the page (formtoken.go); the
	// one-click POST /unsubscribe above must not need one.
	e.GET("/preferences/:token", s.handlePreferencesPage)
	e.POST("/preferences/:token", s.handlePreferences)
	e.POST("/preferences/:token/export", s.handleDataRequest) // emails a link to GET /data/{token}
	e.POST("/preferences/:token/erase", s.handleEraseRequest)
	e.GET("/data/:token", s.handleDataPage)
	e.POST("/data/:token", s.handleDataDownload)

	e.GET("/archive", s.handleArchive)
	e.GET("/archive.atom", s.handleArchiveFeed)
	e.GET("/archive/:newsletter", s.handleNewsletterArchive) // also "/archive/{id}.atom", its feed
	e.GET("/archive/:newsletter/:id", s.handleArchiveIssue)

	// The admin API: bearer token; a read token may only GET.
	e.GET("/api/v1/openapi.json", s.handleOpenAPI) // no token: the document is public
	e.GET("/api/v1/subscribers", s.handleListSubscribers, s.requireAdmin)
	e.GET("/api/v1/subscribers/:id/export", s.handleExportSubscriber, s.requireAdmin)
	e.DELETE("/api/v1/subscribers/:id", s.handleEraseSubscriber, s.requireAdmin)
	e.GET("/api/v1/suppressions", s.handleListSuppressions, s.requireAdmin)
	e.POST("/api/v1/suppressions", s.handleAddSuppression, s.requireAdmin)
	e.DELETE("/api/v1/suppressions", s.handleRemoveSuppression, s.requireAdmin)
	e.GET("/api/v1/subscribers/export", s.handleExportSubscribers, s.requireAdmin)
	s.setBodyLimit(e.POST("/api/v1/subscribers/import", s.handleImportSubscribers, s.requireAdmin), max(ImportBodyLimit, s.cfg.BodyLimit))
	e.GET("/api/v1/subscribers/:id", s.handleGetSubscriber, s.requireAdmin)
	e.PATCH("/api/v1/subscribers/:id", s.handlePatchSubscriber, s.requireAdmin)
	e.GET("/api/v1/articles", s.handleListArticles, s.requireAdmin)
	s.setBodyLimit(e.POST("/api/v1/articles", s.handlePostArticle, s.requireAdmin), max(ArticleBodyLimit, s.cfg.BodyLimit))
	e.GET("/api/v1/articles/:id", s.handleGetArticle, s.requireAdmin)
	e.DELETE("/api/v1/articles/:id", s.handleDeleteArticle, s.requireAdmin)
	e.GET("/api/v1/newsletters", s.handleListNewsletters, s.requireAdmin)
	e.POST("/api/v1/newsletters/:id/issues", s.handleSendIssue, s.requireAdmin)
	e.GET("/api/v1/issues", s.handleListIssues, s.requireAdmin)
	e.GET("/api/v1/issues/:id", s.handleGetIssue, s.requireAdmin)
	e.POST("/api/v1/issues/:id/resend-failed", s.handleResendFailed, s.requireAdmin)
	e.GET("/api/v1/stats", s.handleStats, s.requireAdmin)

	// Bounce and complaint webhooks: each checks its provider's signature.
	s.setBodyLimit(e.POST("/webhooks/ses", s.handleSESWebhook), WebhookBodyLimit)
	s.setBodyLimit(e.POST("/webhooks/postmark", s.handlePostmarkWebhook), WebhookBodyLimit)
	s.setBodyLimit(e.POST("/webhooks/sendgrid", s.handleSendGridWebhook), WebhookBodyLimit)
	s.setBodyLimit(e.POST("/webhooks/mailgun", s.handleMailgunWebhook), WebhookBodyLimit)

	// The admin pages: a session cookie; every POST carries its CSRF token.
	e.GET("/admin/login", s.handleAdminLoginPage)
	e.POST("/admin/login", s.handleAdminLogin)
	e.POST("/admin/logout", s.handleAdminLogout, s.requireSession)
	e.GET("/admin", s.handleAdminDashboard, s.requireSession)
	e.GET("/admin/newsletters", s.handleAdminNewsletters, s.requireSession)
	e.POST("/admin/newsletters/:id/send", s.handleAdminSendNow, s.requireSession)
	e.GET("/admin/issues/:id", s.handleAdminIssue, s.requireSession)
	e.GET("/admin/issues/:id/progress", s.handleAdminIssueProgress, s.requireSession)
	e.POST("/admin/issues/:id/resend-failed", s.handleAdminResendFailed, s.requireSession)
	e.GET("/admin/subscribers", s.handleAdminSubscribers, s.requireSession)
	e.GET("/admin/subscribers/:id", s.handleAdminSubscriber, s.requireSession)
	e.POST("/admin/subscribers/:id", s.handleAdminUpdateSubscriber, s.requireSession)
	e.GET("/admin/articles", s.handleAdminArticles, s.requireSession)
	e.GET("/admin/feeds", s.handleAdminFeeds, s.requireSession)
	e.GET("/admin/mail", s.handleAdminMail, s.requireSession)
	e.GET("/admin/mail/:name", s.handleAdminMailMessage, s.requireSession)

	e.GET("/healthz", s.handleHealth)
	e.GET("/readyz", s.handleReady)
	e.GET("/metrics", s.handleMetrics, s.requireMetrics)

	e.GET("/static/"+stylesheetFile, s.handleStylesheet)
	e.GET("/static/"+adminStylesheet, s.handleAdminAsset)
	e.GET("/static/"+adminScript, s.handleAdminAsset)
	e.GET("/static/"+altchaScript, s.handleAltchaScript)
}
