package web

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/subscribers"
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
	Masked    string
	FormToken string // the download form's CSRF field
	Error     string // why the last press did nothing
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
	f, err := s.readReaderForm(c)
	if err != nil {
		return err
	}
	if why := s.checkReaderForm(c, formPreferences, token, f); why != formOK {
		return s.refuseDataForm(c, token, why)
	}
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
	f, err := s.readReaderForm(c)
	if err != nil {
		return err
	}
	if why := s.checkReaderForm(c, formPreferences, token, f); why != formOK {
		return s.refuseDataForm(c, token, why)
	}
	if f.Get(fieldUnderstand) != understandYes {
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

// refuseDataForm answers an export or erase form whose form token or
// origin is refused: nothing is asked or erased, and the holder of a good
// link gets their preference page back, saying why, with fresh tokens.
func (s *Server) refuseDataForm(c echo.Context, token string, why int) error {
	sub, err := s.subs.CheckPreferencesToken(c.Request().Context(), token)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusForbidden, pagePreferences,
		s.preferencesPage(token, sub, nil, preferenceErrors{Form: formRefusal(why)}))
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
	return s.render(c, http.StatusOK, pageDataExport, s.dataExportPage(c.Param("token"), sub, ""))
}

// dataExportPage fills the download page, with a fresh form token.
func (s *Server) dataExportPage(token string, sub *subscribers.Subscriber, errMsg string) dataExportPage {
	title := "Download your data"
	if errMsg != "" {
		title = "Error: " + title
	}
	page := dataExportPage{
		basePage:  s.base(title),
		Masked:    maskEmail(sub.Email),
		FormToken: s.readerFormToken(formData, token),
		Error:     errMsg,
	}
	page.NoIndex = true
	return page
}

// handleDataDownload spends the single-use link and answers the reader's
// data as a JSON attachment.
func (s *Server) handleDataDownload(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	c.Response().Header().Set("Referrer-Policy", "no-referrer")
	ctx := c.Request().Context()
	token := c.Param("token")
	f, err := s.readReaderForm(c)
	if err != nil {
		return err
	}
	if why := s.checkReaderForm(c, formData, token, f); why != formOK {
		// The single-use link is not spent: its holder gets the button
		// back with a fresh token; a forged or spent link is a 404 or 410.
		sub, err := p.CheckDataExportToken(ctx, token)
		if err != nil {
			return err
		}
		return s.render(c, http.StatusForbidden, pageDataExport, s.dataExportPage(token, sub, formRefusal(why)))
	}
	d, err := p.DownloadDataExport(ctx, token)
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
