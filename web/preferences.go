package web

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/subscribers"
)

// The preference page. It is reached through an unguessable, signed token
// in the URL that names one reader, and sets no cookie. Every form on it
// carries a form token (formtoken.go) bound to that URL token and the time
// the page was rendered; a POST without a good one changes nothing and
// shows the form again. The CSP's form-action 'self' and frame-ancestors
// 'none' keep the page from being framed or posted elsewhere.

// pagePreferences is the reader's preference page.
const pagePreferences = "preferences.html"

// Form fields of the preference page, beside fieldName and fieldNewsletters.
const (
	fieldPause      = "pause"
	fieldPauseUntil = "pause_until"
	fieldAction     = "action"

	// actionUnsubscribeAll is the value of fieldAction posted by the
	// "Unsubscribe from everything" form.
	actionUnsubscribeAll = "unsubscribe_all"
)

// Values of the pause radio buttons.
const (
	pauseNone = "none"
	pauseDate = "date"
)

// pauseWeeks are the fixed pause lengths offered, in weeks; the radio
// button of n weeks has the value "nw".
func pauseWeeks() []int { return []int{1, 2, 4} }

func pauseValue(weeks int) string { return fmt.Sprintf("%dw", weeks) }

// Messages shown after a successful POST.
const (
	noticeSaved        = "Your preferences are saved."
	noticeSavedNone    = "Your preferences are saved. You chose no newsletter, so we will send you nothing."
	noticeUnsubscribed = "You are unsubscribed from everything. We will send you no more newsletters."
)

// preferencesPage is the reader's preference page.
type preferencesPage struct {
	basePage
	Action      string // where the forms post: this page's own address
	Masked      string
	Greeting    string // the saved name, for the greeting
	Name        string // the name field's value
	Newsletters []newsletterChoice
	Pending     bool   // waiting for confirmation: choices are kept meanwhile
	Left        bool   // unsubscribed: nothing is sent
	Stopped     bool   // bounced or complained: nothing can be changed here
	PausedUntil string // "Sunday 6 December 2026", empty when not paused
	Pause       []pauseChoice
	PauseOnDate bool   // the "until a date" radio button is checked
	PauseDate   string // the date field's value, YYYY-MM-DD
	MinDate     string // the date field's bounds
	MaxDate     string
	Errors      preferenceErrors
	Notice      string // shown with role=status after a save
	FormToken   string // the CSRF field of every form on the page
}

// pauseChoice is one radio button of the pause fieldset other than the
// "until a date" one, which the template writes with its date field.
type pauseChoice struct {
	Value   string
	Label   string
	Checked bool
}

// preferenceErrors are the messages shown next to the fields they concern.
type preferenceErrors struct {
	Name        string
	Newsletters string
	Pause       string
	Form        string // not tied to one field
}

// Any reports whether there is an error to show.
func (e preferenceErrors) Any() bool {
	return e.Name != "" || e.Newsletters != "" || e.Pause != "" || e.Form != ""
}

// preferencesInput is the preference form as posted.
type preferencesInput struct {
	Newsletters    []string
	Name           string
	Pause          string // one of the pause radio values
	PauseDate      string // as typed
	UnsubscribeAll bool
}

// handlePreferencesPage shows the reader's current choices in a form. It
// changes nothing.
func (s *Server) handlePreferencesPage(c echo.Context) error {
	sub, err := s.subs.CheckPreferencesToken(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, pagePreferences, s.preferencesPage(c.Param("token"), sub, nil, preferenceErrors{}))
}

// handlePreferences saves the preference form, or the "Unsubscribe from
// everything" form, and shows the page again with what was saved. Invalid
// input is a 422 with the page showing what the reader sent and why it was
// refused.
func (s *Server) handlePreferences(c echo.Context) error {
	ctx := c.Request().Context()
	token := c.Param("token")
	f, err := s.readReaderForm(c)
	if err != nil {
		return err
	}
	in := readPreferences(f)
	if why := s.checkReaderForm(c, formPreferences, token, f); why != formOK {
		// Nothing is saved. The holder of a good link gets the form back
		// with what they chose and a fresh token, to send again.
		sub, err := s.subs.CheckPreferencesToken(ctx, token)
		if err != nil {
			return err
		}
		kept := &in
		if in.UnsubscribeAll {
			kept = nil // that form has no fields: show what is saved
		}
		return s.render(c, http.StatusForbidden, pagePreferences,
			s.preferencesPage(token, sub, kept, preferenceErrors{Form: formRefusal(why)}))
	}
	upd, errs := s.checkPreferences(in)
	if !errs.Any() {
		sub, err := s.subs.UpdatePreferences(ctx, token, upd)
		switch {
		case err == nil:
			p := s.preferencesPage(token, sub, nil, preferenceErrors{})
			switch {
			case in.UnsubscribeAll:
				p.Notice = noticeUnsubscribed
			case len(upd.Newsletters) == 0:
				p.Notice = noticeSavedNone
			default:
				p.Notice = noticeSaved
			}
			return s.render(c, http.StatusOK, pagePreferences, p)
		case herald.IsCode(err, herald.EINVALID):
			// Every field was checked above, so this is a rule only the
			// service knows: show it above the form.
			errs.Form = herald.ErrorMessage(err)
		default:
			return err
		}
	}
	// The refused form is shown again only to the holder of a good token
	// (the page shows their address): a forged link is a 404, an expired
	// one a 410, whatever it sent.
	sub, err := s.subs.CheckPreferencesToken(ctx, token)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusUnprocessableEntity, pagePreferences, s.preferencesPage(token, sub, &in, errs))
}

// readPreferences reads the posted preference form.
func readPreferences(f url.Values) preferencesInput {
	in := preferencesInput{
		Newsletters:    f[fieldNewsletters],
		Name:           f.Get(fieldName),
		Pause:          f.Get(fieldPause),
		PauseDate:      strings.TrimSpace(f.Get(fieldPauseUntil)),
		UnsubscribeAll: f.Get(fieldAction) == actionUnsubscribeAll,
	}
	if in.Pause == "" {
		in.Pause = pauseNone // the resubscribe form on the unsubscribed page sends none
	}
	return in
}

// checkPreferences validates the form field by field (the service checks
// again) and turns it into the update to ask for.
func (s *Server) checkPreferences(in preferencesInput) (subscribers.PreferencesUpdate, preferenceErrors) {
	if in.UnsubscribeAll {
		return subscribers.PreferencesUpdate{UnsubscribeAll: true}, preferenceErrors{}
	}
	var errs preferenceErrors
	upd := subscribers.PreferencesUpdate{}

	known := make(map[string]bool, len(s.cfg.Newsletters))
	for _, n := range s.cfg.Newsletters {
		known[n.ID] = true
	}
	var unknown []string
	for _, id := range in.Newsletters {
		id = strings.TrimSpace(id)
		switch {
		case id == "" || slices.Contains(upd.Newsletters, id):
		case known[id]:
			upd.Newsletters = append(upd.Newsletters, id)
		case len(unknown) < 5:
			unknown = append(unknown, fmt.Sprintf("%q", clipRunes(id, 40)))
		}
	}
	if len(unknown) > 0 {
		errs.Newsletters = fmt.Sprintf("We do not offer %s: choose from the list.", strings.Join(unknown, ", "))
	}

	switch {
	case hasControl(in.Name):
		errs.Name = "The name contains characters that are not allowed, such as line breaks."
	case utf8.RuneCountInString(strings.TrimSpace(in.Name)) > subscribers.MaxNameLength:
		errs.Name = fmt.Sprintf("The name is longer than %d characters.", subscribers.MaxNameLength)
	default:
		upd.Name = strings.TrimSpace(in.Name)
	}

	now := s.now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch in.Pause {
	case pauseNone:
	case pauseDate:
		d, err := time.Parse(time.DateOnly, in.PauseDate)
		switch {
		case in.PauseDate == "":
			errs.Pause = "Enter the date until which to pause your newsletters."
		case err != nil:
			errs.Pause = "The pause date is not a valid date: enter it as year-month-day, like " + today.AddDate(0, 0, 14).Format(time.DateOnly) + "."
		case d.After(subscribers.MaxPauseUntil(now)):
			errs.Pause = "Newsletters can be paused for at most a year: choose a date no later than " + longDate(subscribers.MaxPauseUntil(now)) + "."
		default:
			upd.PauseUntil = d // a date not after today means no pause
		}
	default:
		i := slices.IndexFunc(pauseWeeks(), func(w int) bool { return pauseValue(w) == in.Pause })
		if i < 0 {
			errs.Pause = "Choose one of the pause options."
			break
		}
		upd.PauseUntil = today.AddDate(0, 0, 7*pauseWeeks()[i])
	}
	return upd, errs
}

// preferencesPage fills the page from the saved subscriber, or, when in is
// not nil, from the input the reader sent, so a refused form keeps it.
func (s *Server) preferencesPage(token string, sub *subscribers.Subscriber, in *preferencesInput, errs preferenceErrors) preferencesPage {
	title := "Your newsletter preferences"
	if errs.Any() {
		title = "Error: " + title
	}
	now := s.now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	p := preferencesPage{
		basePage: s.base(title),
		Action:   s.prefix + "/preferences/" + url.PathEscape(token),
		Masked:   maskEmail(sub.Email),
		Greeting: sub.Name,
		Name:     sub.Name,
		Pending:  sub.Status == subscribers.StatusPending,
		Left:     sub.Status == subscribers.StatusUnsubscribed,
		Stopped:  sub.Status == subscribers.StatusBounced || sub.Status == subscribers.StatusComplained,
		MinDate:  today.AddDate(0, 0, 1).Format(time.DateOnly),
		MaxDate:  subscribers.MaxPauseUntil(now).Format(time.DateOnly),
		Errors:   errs,
		// Each render gets a fresh token, so a form shown again after a
		// refusal can be sent at once.
		FormToken: s.readerFormToken(formPreferences, token),
	}
	p.NoIndex = true
	receiving := sub.Status == subscribers.StatusActive || sub.Status == subscribers.StatusPending
	if receiving && sub.Paused(now) {
		p.PausedUntil = longDate(sub.PausedUntil)
	}

	chosen := make(map[string]bool)
	pause := pauseNone
	switch {
	case in != nil:
		for _, id := range in.Newsletters {
			chosen[strings.TrimSpace(id)] = true
		}
		p.Name = in.Name
		pause, p.PauseDate = in.Pause, in.PauseDate
	case receiving:
		for _, id := range sub.Newsletters {
			chosen[id] = true
		}
		if p.PausedUntil != "" {
			pause, p.PauseDate = pauseDate, sub.PausedUntil.UTC().Format(time.DateOnly)
		}
	}
	for i, n := range s.cfg.Newsletters {
		p.Newsletters = append(p.Newsletters, newsletterChoice{
			Index: i, ID: n.ID, Name: n.Name, Description: n.Description, Schedule: n.Schedule,
			Checked: chosen[n.ID],
		})
	}
	p.PauseOnDate = pause == pauseDate
	none := "Not paused"
	if p.PausedUntil != "" {
		none = "Not paused: start again now"
	}
	p.Pause = append(p.Pause, pauseChoice{Value: pauseNone, Label: none, Checked: pause == pauseNone})
	for _, w := range pauseWeeks() {
		label := "For 1 week"
		if w > 1 {
			label = fmt.Sprintf("For %d weeks", w)
		}
		label += " (until " + shortDate(today.AddDate(0, 0, 7*w)) + ")"
		p.Pause = append(p.Pause, pauseChoice{Value: pauseValue(w), Label: label, Checked: pause == pauseValue(w)})
	}
	return p
}

// resubscribeOffer is the "Changed your mind?" form on the unsubscribed
// page: one button that posts the reader's previous choice to their
// preference page.
type resubscribeOffer struct {
	Action      string
	FormToken   string // the form's CSRF field, as on the preference page
	Name        string
	Newsletters []Newsletter
}

// resubscribeOffer returns the way back for a reader who just left, or nil
// when the preference page cannot take them back: they never confirmed
// (a first subscription takes the double opt-in), or none of their
// newsletters is offered any more.
func (s *Server) resubscribeOffer(sub *subscribers.Subscriber) *resubscribeOffer {
	if sub.Status != subscribers.StatusUnsubscribed || sub.ConfirmedAt.IsZero() {
		return nil
	}
	var lists []Newsletter
	for _, n := range s.newslettersOf(sub.Newsletters) {
		if slices.ContainsFunc(s.cfg.Newsletters, func(c Newsletter) bool { return c.ID == n.ID }) {
			lists = append(lists, n)
		}
	}
	if len(lists) == 0 {
		return nil
	}
	token := s.subs.PreferencesToken(sub.ID)
	return &resubscribeOffer{
		Action:      s.prefix + "/preferences/" + url.PathEscape(token),
		FormToken:   s.readerFormToken(formPreferences, token),
		Name:        sub.Name,
		Newsletters: lists,
	}
}

// longDate writes a date as the page shows it: "Sunday 6 December 2026".
func longDate(t time.Time) string { return t.UTC().Format("Monday 2 January 2006") }

// shortDate writes a date without the year: "6 December".
func shortDate(t time.Time) string { return t.UTC().Format("2 January") }

// clipRunes cuts s to at most n runes.
func clipRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
