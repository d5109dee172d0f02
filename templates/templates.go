// Package templates embeds Herald's page and email templates. It holds files
// only; the packages that render them parse them once at start.
package templates

import "embed"

// FS holds web/*.html (pages) and email/*.tmpl (text and HTML pairs).
//
//go:embed all:email all:web
var FS embed.FS
