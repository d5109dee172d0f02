package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"herald"
)

func TestPreferencesPageOffersDataForms(t *testing.T) {
	h, _ := newPrivacyHarness(t)
	rec := h.get(t, "/preferences/"+tokGood)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec,
		`action="/preferences/good-token/export"`, "Email me my data",
		`action="/preferences/good-token/erase"`, `name="understand" value="yes"`, "I understand")
}

func TestDataRequest(t *testing.T) {
	h, fp := newPrivacyHarness(t)
	rec := h.do(t, http.MethodPost, "/preferences/"+tokGood+"/export", formType, h.readerForm(formPreferences, tokGood, nil))
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, noticeDataRequested, "j•••@example.org")
	if h.wakeCount() != 1 {
		t.Errorf("wakes = %d, want 1: the email is sent at once", h.wakeCount())
	}
	// Within the hour: the page says so, with 429.
	rec = h.do(t, http.MethodPost, "/preferences/"+tokGood+"/export", formType, h.readerForm(formPreferences, tokGood, nil))
	wantStatus(t, rec, http.StatusTooManyRequests)
	wantBody(t, rec, "less than an hour ago", "Your newsletter preferences")
	wantNoBody(t, rec, noticeDataRequested)

	fp.requestErr = herald.Errorf(herald.ECONFLICT, "We cannot send email to this address any more.")
	rec = h.do(t, http.MethodPost, "/preferences/"+tokGood+"/export", formType, h.readerForm(formPreferences, tokGood, nil))
	wantStatus(t, rec, http.StatusConflict)
	wantBody(t, rec, "We cannot send email to this address any more.")

	wantStatus(t, h.do(t, http.MethodPost, "/preferences/forged/export", formType, nil), http.StatusNotFound)
	wantStatus(t, h.do(t, http.MethodPost, "/preferences/"+tokExpired+"/export", formType, nil), http.StatusGone)
	// Only a POST asks: a GET of the address is not a route.
	if rec := h.get(t, "/preferences/"+tokGood+"/export"); rec.Code == http.StatusOK {
		t.Errorf("GET of the export action answered 200")
	}
}

func TestEraseRequest(t *testing.T) {
	h, fp := newPrivacyHarness(t)
	// Without "I understand": nothing erased, the page says why.
	for _, form := range []url.Values{nil, {"understand": {"no"}}} {
		rec := h.do(t, http.MethodPost, "/preferences/"+tokGood+"/erase", formType, h.readerForm(formPreferences, tokGood, form))
		wantStatus(t, rec, http.StatusUnprocessableEntity)
		wantBody(t, rec, errorUnderstand, "Your newsletter preferences")
	}
	if n := fp.callsOf("EraseByToken"); n != 0 {
		t.Fatalf("EraseByToken called %d times without the box ticked", n)
	}
	rec := h.do(t, http.MethodPost, "/preferences/"+tokGood+"/erase", formType, h.readerForm(formPreferences, tokGood, url.Values{"understand": {"yes"}}))
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Your data is erased", "scrambled fingerprint")
	wantNoBody(t, rec, "jane@example.org", "j•••@example.org")
	if !slices.Equal(fp.erasedTokens, []string{tokGood}) {
		t.Errorf("erased tokens = %v", fp.erasedTokens)
	}
	rec = h.do(t, http.MethodPost, "/preferences/forged/erase", formType, strings.NewReader("understand=yes"))
	wantStatus(t, rec, http.StatusNotFound)
	rec = h.do(t, http.MethodPost, "/preferences/"+tokGood+"/erase", "text/plain", strings.NewReader("understand=yes"))
	wantStatus(t, rec, http.StatusUnsupportedMediaType)
}

func TestDataDownloadPage(t *testing.T) {
	h, fp := newPrivacyHarness(t)
	// The page shows a button and changes nothing, however often opened.
	for range 2 {
		rec := h.get(t, "/data/"+tokData)
		wantStatus(t, rec, http.StatusOK)
		wantBody(t, rec, `<form method="post">`, "Download my data", "j•••@example.org")
		wantHeader(t, rec, "Referrer-Policy", "no-referrer")
		wantHeader(t, rec, "Cache-Control", "no-store")
	}
	if n := fp.callsOf("DownloadDataExport"); n != 0 {
		t.Fatalf("opening the page downloaded %d times", n)
	}
	wantStatus(t, h.get(t, "/data/unknown"), http.StatusNotFound)
	wantStatus(t, h.get(t, "/data/"+tokDataUsed), http.StatusGone)

	rec := h.do(t, http.MethodPost, "/data/"+tokData, formType, h.readerForm(formData, tokData, nil))
	wantStatus(t, rec, http.StatusOK)
	wantHeader(t, rec, "Content-Disposition", "attachment; filename=passblue-data-2026-12-06.json")
	wantHeader(t, rec, "Referrer-Policy", "no-referrer")
	var got struct {
		Format     string `json:"format"`
		Subscriber struct {
			Email string `json:"email"`
		} `json:"subscriber"`
		Deliveries []json.RawMessage `json:"deliveries"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Format != "herald.dossier.v1" || got.Subscriber.Email != "jane@example.org" || len(got.Deliveries) != 1 {
		t.Errorf("download = %+v", got)
	}
	// The link works once.
	rec = h.do(t, http.MethodPost, "/data/"+tokData, formType, h.readerForm(formData, tokData, nil))
	wantStatus(t, rec, http.StatusGone)
	wantBody(t, rec, "used already")
	if strings.Contains(h.log.String(), tokData) || strings.Contains(h.log.String(), "jane@") {
		t.Errorf("the log holds a token or an address:\n%s", h.log.String())
	}
}
