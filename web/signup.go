package web

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/subscribers"
)

// Form field names of the signup form. "website" is the honeypot: people
// never see it, form-filling bots fill it in.
const (
	fieldEmail       = "email"
	fieldName        = "name"
	fieldNewsletters = "newsletters"
	fieldOffered     = "newsletters_offered"
	fieldHoneypot    = "website"
)

// signupInput is one signup as received, form or JSON.
type signupInput struct {
	Email       string
	Name        string
	Newsletters []string
	// Offered is set by our own form, which shows the newsletter
	// checkboxes: there, none ticked is a mistake, not "all of them".
	Offered  bool
	Honeypot string
	// Stamp is the form's signed time stamp; "" when the form had none.
	Stamp string
	// Altcha is the solved proof-of-work challenge, base64 JSON.
	Altcha string
	JSON   bool
}

// handleSignupPage shows the form with every newsletter ticked.
func (s *Server) handleSignupPage(c echo.Context) error {
	return s.render(c, http.StatusOK, pageSignup, s.signupPage(signupInput{}, fieldErrors{}))
}

// handleSubscribe takes a signup from our form, a news site's own form, or
// JSON. An accepted signup gets the same answer whatever the address's
// standing, so the answer tells nobody who is subscribed.
func (s *Server) handleSubscribe(c echo.Context) error {
	if err := s.limitSignup(c); err != nil {
		return err
	}
	in, err := s.readSignup(c)
	if err != nil {
		if herald.IsCode(err, herald.EINVALID) {
			s.observeSignup(SignupInvalid)
		}
		return err
	}
	if in.Honeypot != "" {
		// A bot: answer exactly as for a person, record nothing.
		s.observeSignup(SignupHoneypot)
		return s.signupAccepted(c, in)
	}
	if s.tooFast(in) {
		// Filled in faster than a person can, or with a stamp we did not
		// sign: a bot, answered like the honeypot.
		s.observeSignup(SignupTooFast)
		return s.signupAccepted(c, in)
	}
	if refused, err := s.refuseWithoutAltcha(c, in); refused {
		return err
	}
	if errs := s.checkSignup(&in); errs.Any() {
		s.observeSignup(SignupInvalid)
		return s.signupRejected(c, in, errs)
	}
	if result, msg := s.checkDomain(c.Request().Context(), in.Email); result != "" {
		s.observeSignup(result)
		return s.signupRejected(c, in, fieldErrors{Email: msg})
	}
	source := "form"
	if in.JSON {
		source = "api"
	}
	err = s.subs.Signup(c.Request().Context(), subscribers.SignupRequest{
		Email:       in.Email,
		Name:        in.Name,
		Newsletters: in.Newsletters,
		IP:          c.RealIP(),
		UserAgent:   c.Request().UserAgent(),
		Source:      consentSource(c.Request().Referer(), source),
	})
	if herald.IsCode(err, herald.EINVALID) {
		// Every field was checked above, so this is a rule only the
		// service knows: show it above the form.
		s.observeSignup(SignupInvalid)
		return s.signupRejected(c, in, fieldErrors{Form: herald.ErrorMessage(err)})
	} else if err != nil {
		return err
	}
	s.observeSignup(SignupAccepted)
	s.callWake()
	return s.signupAccepted(c, in)
}

// limitSignup counts the signup against the per-IP and the per-subnet
// limits, and towards attack mode: 429 with Retry-After when a limit is
// reached.
func (s *Server) limitSignup(c echo.Context) error {
	result, wait := s.limits.take(c.Request().Context(), c.RealIP(), s.now())
	if result == "" {
		return nil
	}
	s.observeSignup(result)
	c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
	return herald.Errorf(herald.ERATELIMIT, "Too many signups from your network. Please wait a minute and try again.")
}

// tooFast reports whether a form signup carries a stamp that is forged,
// stale, or younger than MinFillTime. JSON signups and forms without a
// stamp (a news site's own form) are not checked.
func (s *Server) tooFast(in signupInput) bool {
	if in.JSON || in.Stamp == "" || s.cfg.MinFillTime <= 0 {
		return false
	}
	return !checkStamp(s.keys.stamp, in.Stamp, s.now(), s.cfg.MinFillTime)
}

func (s *Server) signupAccepted(c echo.Context, in signupInput) error {
	if in.JSON {
		return c.JSON(http.StatusAccepted, struct {
			Status string `json:"status"`
		}{"pending"})
	}
	return c.HTMLBlob(http.StatusOK, s.checkInbox)
}

// signupRejected answers 422: the form again with the reader's input and the
// errors beside their fields, or the JSON error.
func (s *Server) signupRejected(c echo.Context, in signupInput, errs fieldErrors) error {
	if in.JSON {
		return herald.Errorf(herald.EINVALID, "%s", errs.First())
	}
	return s.render(c, http.StatusUnprocessableEntity, pageSignup, s.signupPage(in, errs))
}

func (s *Server) signupPage(in signupInput, errs fieldErrors) signupPage {
	title := "Don't miss a story"
	if errs.Any() {
		title = "Error: " + title
	}
	p := signupPage{
		basePage:       s.base(title),
		Action:         s.prefix + "/subscribe",
		Email:          in.Email,
		Name:           in.Name,
		ConsentText:    s.cfg.ConsentText,
		ConsentVersion: s.cfg.ConsentVersion,
		Errors:         errs,
		Stamp:          in.Stamp,
	}
	if s.altcha.required(s.now()) {
		p.Altcha = true
		p.AltchaScript = s.altchaJSURL
		p.AltchaChallenge = s.prefix + "/altcha/challenge"
	}
	if p.Stamp == "" || !checkStamp(s.keys.stamp, p.Stamp, s.now(), 0) {
		// A form shown again after an error keeps its first stamp, so
		// that a quick correction is not taken for a bot.
		p.Stamp = formStamp(s.keys.stamp, s.now())
	}
	chosen := make(map[string]bool, len(in.Newsletters))
	for _, id := range in.Newsletters {
		chosen[id] = true
	}
	for i, n := range s.cfg.Newsletters {
		p.Newsletters = append(p.Newsletters, newsletterChoice{
			Index: i, ID: n.ID, Name: n.Name, Description: n.Description, Schedule: n.Schedule,
			Checked: !in.Offered || chosen[n.ID],
		})
	}
	return p
}

// readSignup reads the body by its content type.
func (s *Server) readSignup(c echo.Context) (signupInput, error) {
	req := c.Request()
	mt, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if err != nil {
		mt = ""
	}
	switch mt {
	case echo.MIMEApplicationForm:
		if err := req.ParseForm(); err != nil {
			return signupInput{}, readError(c, herald.Errorf(herald.EBADREQUEST, "The form data could not be read."))
		}
		return formSignup(req.PostForm), nil
	case echo.MIMEMultipartForm:
		if err := req.ParseMultipartForm(s.cfg.BodyLimit); err != nil {
			return signupInput{}, readError(c, herald.Errorf(herald.EBADREQUEST, "The form data could not be read."))
		}
		defer func() { _ = req.MultipartForm.RemoveAll() }()
		return formSignup(req.PostForm), nil
	case echo.MIMEApplicationJSON:
		return readJSONSignup(c)
	}
	return signupInput{}, herald.Errorf(herald.EUNSUPPORTED,
		"Send the signup as application/x-www-form-urlencoded, multipart/form-data or application/json.")
}

func formSignup(f url.Values) signupInput {
	return signupInput{
		Email:       f.Get(fieldEmail),
		Name:        f.Get(fieldName),
		Newsletters: f[fieldNewsletters],
		Offered:     f.Get(fieldOffered) != "",
		Honeypot:    f.Get(fieldHoneypot),
		Stamp:       f.Get(fieldStamp),
		Altcha:      f.Get(fieldAltcha),
	}
}

// readJSONSignup decodes {"email","name","newsletters"}; other fields are
// ignored. A body that is not that object is a 400 that says why.
func readJSONSignup(c echo.Context) (signupInput, error) {
	var body struct {
		Email       string   `json:"email"`
		Name        string   `json:"name"`
		Newsletters []string `json:"newsletters"`
		Altcha      string   `json:"altcha"`
	}
	dec := json.NewDecoder(c.Request().Body)
	if err := dec.Decode(&body); err != nil {
		return signupInput{}, readError(c, jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return signupInput{}, readError(c, herald.Errorf(herald.EBADREQUEST, "The request body must hold one JSON object and nothing after it."))
	}
	return signupInput{Email: body.Email, Name: body.Name, Newsletters: body.Newsletters, Altcha: body.Altcha, JSON: true}, nil
}

// jsonProblem names what is wrong with a JSON body.
func jsonProblem(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return herald.Errorf(herald.EBADREQUEST, `The request body is empty: send a JSON object like {"email": "name@example.org"}.`)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return herald.Errorf(herald.EBADREQUEST, "The request body is not valid JSON: it ends too early.")
	case errors.As(err, &syntax):
		return herald.Errorf(herald.EBADREQUEST, "The request body is not valid JSON: %s (at byte %d).", syntax.Error(), syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return herald.Errorf(herald.EBADREQUEST, "The request body must be a JSON object.")
		}
		want := "a string"
		if typ.Field == fieldNewsletters {
			want = "a list of strings"
		}
		return herald.Errorf(herald.EBADREQUEST, "The field %q must be %s.", typ.Field, want)
	}
	return herald.Errorf(herald.EBADREQUEST, "The request body is not valid JSON.")
}

// checkSignup validates what the web layer can say most precisely, field by
// field, before the service sees it (the service checks again). It trims
// the input in place.
func (s *Server) checkSignup(in *signupInput) fieldErrors {
	var errs fieldErrors
	switch {
	case hasControl(in.Email):
		errs.Email = "The email address contains characters that are not allowed, such as line breaks."
	case len(strings.TrimSpace(in.Email)) > subscribers.MaxAddressLength:
		errs.Email = "The email address is longer than 254 characters."
	case strings.TrimSpace(in.Email) == "":
		errs.Email = "Enter your email address."
	default:
		in.Email = strings.TrimSpace(in.Email)
		if _, err := subscribers.NormalizeAddress(in.Email); err != nil {
			errs.Email = herald.ErrorMessage(err)
		}
	}
	switch {
	case hasControl(in.Name):
		errs.Name = "The name contains characters that are not allowed, such as line breaks."
	case utf8.RuneCountInString(strings.TrimSpace(in.Name)) > subscribers.MaxNameLength:
		errs.Name = "The name is longer than 100 characters."
	default:
		in.Name = strings.TrimSpace(in.Name)
	}
	known := make(map[string]bool, len(s.cfg.Newsletters))
	for _, n := range s.cfg.Newsletters {
		known[n.ID] = true
	}
	var ids []string
	seen := make(map[string]bool, len(in.Newsletters))
	for _, id := range in.Newsletters {
		id = strings.TrimSpace(id)
		if id == "" || seen[id] {
			continue
		}
		if hasControl(id) || len(id) > 64 || (len(known) > 0 && !known[id]) {
			errs.Newsletters = "The newsletters chosen are not all on offer: choose from the list."
			break
		}
		seen[id] = true
		ids = append(ids, id)
	}
	in.Newsletters = ids
	if errs.Newsletters == "" && in.Offered && len(ids) == 0 && len(s.cfg.Newsletters) > 0 {
		errs.Newsletters = "Choose at least one newsletter."
	}
	return errs
}

// hasControl reports whether s holds a control character (CR and LF above
// all: names end up in headers), a line or paragraph separator, or is not
// valid UTF-8.
func hasControl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return true
		}
	}
	return false
}

// consentSource is where a signup came from: the referring page when the
// Referer is an http(s) URL, without its query and fragment (they may carry
// personal data), else fallback.
func consentSource(referer, fallback string) string {
	if referer == "" || hasControl(referer) {
		return fallback
	}
	u, err := url.Parse(referer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fallback
	}
	u.User = nil
	u.RawQuery = ""
	u.ForceQuery = false
	u.Fragment = ""
	u.RawFragment = ""
	return u.String()
}
