package web

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"herald"
)

// A reader's own data: from their preference page they can ask for a copy of
// everything Herald holds about them (an email brings a link to a page
// whose button downloads it) or have it erased (a checkbox says they
// understand that this cannot be undone).

// Pages of the reader's data requests.
const (
	pageDataExport = "data_export.html" // GET /data/{token}: the download button
	pageErased     = "erased.html"      // after an erase
)

// Form fields of the erase form.
const (
	fieldUnderstand = "understand"
	// understandYes is the value of the ticked "I understand" box.
	understandYes = "yes"
)

// Messages of the data forms on the preference page.
const (
	noticeDataRequested = "We are sending you an email with a link to download your data. The link works once, for 7 days."
	errorUnderstand     = "Tick the box to confirm that you understand that erasing your data cannot be undone."
)

// dataExportPage shows the button that downloads a reader's data.
type dataExportPage struct {
	basePage
	Masked string
}

// erasedPage confirms an erase.
type erasedPage struct {
	basePage
}

// handleDataRequest queues the email with a link to the reader's data and
// shows their preference page again, saying so. Asking twice within the
// hour (429) or for an address that cannot be emailed (409) shows the page
// with the reason.
func (s *Server) handleDataRequest(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	token := c.Param("token")
	err = p.RequestDataExport(ctx, token)
	status := http.StatusOK
	switch {
	case err == nil:
		s.callWake()
	case herald.IsCode(err, herald.ERATELIMIT):
		status = http.StatusTooManyRequests
	case herald.IsCode(err, herald.ECONFLICT):
		status = http.StatusConflict
	default:
		return err
	}
	sub, cerr := s.subs.CheckPreferencesToken(ctx, token)
	if cerr != nil {
		return cerr
	}
	var errs preferenceErrors
	if err != nil {
		errs.Form = herald.ErrorMessage(err)
	}
	page := s.preferencesPage(token, sub, nil, errs)
	if err == nil {
		page.Notice = noticeDataRequested
	}
	return s.render(c, status, pagePreferences, page)
}

// handleEraseRequest erases the reader a preferences token names, once they
// ticked "I understand"; without it the preference page comes back with a
// 422 saying why.
func (s *Server) handleEraseRequest(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	token := c.Param("token")
	understood, err := s.readUnderstand(c)
	if err != nil {
		return err
	}
	if !understood {
		sub, err := s.subs.CheckPreferencesToken(ctx, token)
		if err != nil {
			return err
		}
		return s.render(c, http.StatusUnprocessableEntity, pagePreferences,
			s.preferencesPage(token, sub, nil, preferenceErrors{Form: errorUnderstand}))
	}
	if err := p.EraseByToken(ctx, token); err != nil {
		return err
	}
	page := erasedPage{basePage: s.base("Your data is erased")}
	page.NoIndex = true
	return s.render(c, http.StatusOK, pageErased, page)
}

// readUnderstand reads the erase form and reports whether the "I
// understand" box was ticked.
func (s *Server) readUnderstand(c echo.Context) (bool, error) {
	req := c.Request()
	mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	var f url.Values
	switch mt {
	case echo.MIMEApplicationForm:
		if err := req.ParseForm(); err != nil {
			return false, readError(c, herald.Errorf(herald.EBADREQUEST, "The form data could not be read."))
		}
		f = req.PostForm
	case echo.MIMEMultipartForm:
		if err := req.ParseMultipartForm(s.cfg.BodyLimit); err != nil {
			return false, readError(c, herald.Errorf(herald.EBADREQUEST, "The form data could not be read."))
		}
		defer func() { _ = req.MultipartForm.RemoveAll() }()
		f = req.PostForm
	default:
		return false, herald.Errorf(herald.EUNSUPPORTED, "Send the form as application/x-www-form-urlencoded or multipart/form-data.")
	}
	return f.Get(fieldUnderstand) == understandYes, nil
}

// handleDataPage shows the button that downloads the reader's data. It
// changes nothing: mail scanners open every link in a message, and must not
// spend the single-use link.
func (s *Server) handleDataPage(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	c.Response().Header().Set("Referrer-Policy", "no-referrer")
	sub, err := p.CheckDataExportToken(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	page := dataExportPage{basePage: s.base("Download your data"), Masked: maskEmail(sub.Email)}
	page.NoIndex = true
	return s.render(c, http.StatusOK, pageDataExport, page)
}

// handleDataDownload spends the single-use link and answers the reader's
// data as a JSON attachment.
func (s *Server) handleDataDownload(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	c.Response().Header().Set("Referrer-Policy", "no-referrer")
	d, err := p.DownloadDataExport(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s-data-%s.json", fileSlug(s.cfg.SiteName), d.ExportedAt.UTC().Format("2006-01-02"))
	return s.writeDossier(c, d, name)
}

// fileSlug makes a file name part of a site name: lower-case ASCII letters
// and digits, runs of anything else as one dash.
func fileSlug(name string) string {
	var b []byte
	dash := false
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b = append(b, byte(r))
			dash = false
		case r >= 'A' && r <= 'Z':
			b = append(b, byte(r-'A'+'a'))
			dash = false
		case !dash && len(b) > 0:
			b = append(b, '-')
			dash = true
		}
	}
	for len(b) > 0 && b[len(b)-1] == '-' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 || len(b) > 40 {
		return "newsletter"
	}
	return string(b)
}
