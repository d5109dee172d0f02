package articles

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"herald"
)

// Fetcher defaults.
const (
	DefaultFetchTimeout = 20 * time.Second
	DefaultMaxFeedBytes = 10 << 20
	DefaultMaxRedirects = 5
)

// UserAgent returns the User-Agent Herald fetches with: "Herald/1.0" and,
// when baseURL is set, "(+baseURL)" so publishers can see who is asking.
func UserAgent(baseURL string) string {
	if baseURL = strings.TrimSpace(baseURL); baseURL != "" {
		return "Herald/1.0 (+" + baseURL + ")"
	}
	return "Herald/1.0"
}

// Fetcher downloads and parses one feed with a conditional GET. Its zero
// value works; set fields before first use and not after.
type Fetcher struct {
	// Client makes the requests (nil: a new http.Client). Its
	// CheckRedirect is replaced by the redirect limit below.
	Client       *http.Client
	UserAgent    string        // default UserAgent("")
	Timeout      time.Duration // for the whole fetch, body included; default 20 s
	MaxBytes     int64         // body size limit; default 10 MiB
	MaxRedirects int           // default 5
	// Normalizer parses and cleans the items (nil: a new one per fetch).
	Normalizer *Normalizer
}

// Fetched is the outcome of one successful fetch.
type Fetched struct {
	// NotModified is true when the server answered 304: nothing to do.
	NotModified  bool
	ETag         string // validators to send next time
	LastModified string
	Items        *FeedItems // nil when NotModified
}

// FetchError is a failed fetch, with a short reason fit for FeedState.LastError
// and the operator's eyes.
type FetchError struct {
	Reason string
	Err    error // the underlying error, if any
}

// Error returns the reason.
func (e *FetchError) Error() string { return e.Reason }

// Unwrap returns the underlying error.
func (e *FetchError) Unwrap() error { return e.Err }

var (
	errTooManyRedirects = errors.New("too many redirects")
	errTooLarge         = errors.New("too large")
)

// Fetch GETs feedURL, sending If-None-Match and If-Modified-Since from
// etag and lastModified when set, and parses what comes back. Items get
// feedURL as Source and as the base of relative links. A failure is a
// *FetchError: timeout, HTTP status >= 400, a body over MaxBytes, too many
// redirects, a document that is not a feed.
func (f *Fetcher) Fetch(ctx context.Context, feedURL, etag, lastModified string) (*Fetched, error) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	limit := f.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxFeedBytes
	}
	ua := f.UserAgent
	if ua == "" {
		ua = UserAgent("")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, feedURL, nil)
	if err != nil {
		return nil, &FetchError{Reason: "invalid feed URL", Err: err}
	}
	req.Header.Set("User-Agent", ua)
	req.Header.Set("Accept", "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if lastModified != "" {
		req.Header.Set("If-Modified-Since", lastModified)
	}

	resp, err := f.client().Do(req)
	if err != nil {
		return nil, f.fetchFailure(ctx, err, timeout)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusNotModified:
		return &Fetched{NotModified: true, ETag: keep(resp.Header.Get("ETag"), etag),
			LastModified: keep(resp.Header.Get("Last-Modified"), lastModified)}, nil
	case resp.StatusCode >= 400:
		return nil, &FetchError{Reason: "HTTP " + resp.Status}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, &FetchError{Reason: "unexpected HTTP " + resp.Status}
	}

	body := &limitedReader{r: io.LimitReader(resp.Body, limit+1), left: limit}
	n := f.Normalizer
	if n == nil {
		n = NewNormalizer()
	}
	items, err := n.ParseFeed(body, feedURL, feedURL)
	if body.over {
		return nil, &FetchError{Reason: fmt.Sprintf("feed is larger than %s", byteSize(limit)), Err: errTooLarge}
	}
	if err != nil {
		if body.err != nil {
			return nil, f.fetchFailure(ctx, body.err, timeout)
		}
		return nil, &FetchError{Reason: herald.ErrorMessage(err), Err: err}
	}
	return &Fetched{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), Items: items}, nil
}

// client returns the HTTP client with the redirect limit installed.
func (f *Fetcher) client() *http.Client {
	c := &http.Client{}
	if f.Client != nil {
		*c = *f.Client
	}
	maxRedirects := f.maxRedirects()
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return errTooManyRedirects
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to a %s URL", req.URL.Scheme)
		}
		return nil
	}
	return c
}

func (f *Fetcher) maxRedirects() int {
	if f.MaxRedirects <= 0 {
		return DefaultMaxRedirects
	}
	return f.MaxRedirects
}

// fetchFailure turns a transport error into a FetchError with a reason.
func (f *Fetcher) fetchFailure(ctx context.Context, err error, timeout time.Duration) *FetchError {
	var ne net.Error
	switch {
	case errors.Is(err, errTooManyRedirects):
		return &FetchError{Reason: fmt.Sprintf("too many redirects (more than %d)", f.maxRedirects()), Err: err}
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return &FetchError{Reason: fmt.Sprintf("timed out after %s", timeout), Err: err}
	case errors.Is(err, context.Canceled):
		return &FetchError{Reason: "cancelled", Err: err}
	}
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = ue.Err.Error()
	}
	return &FetchError{Reason: "request failed: " + clip(msg, 200), Err: err}
}

// limitedReader reads at most left bytes from r (an io.LimitReader that
// allows one byte more) and notes when the body went past the limit.
type limitedReader struct {
	r    io.Reader
	left int64
	over bool
	err  error // the first error other than EOF
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.over {
		return 0, errTooLarge
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		l.over = true
		return n + int(l.left), errTooLarge
	}
	if err != nil && err != io.EOF && l.err == nil {
		l.err = err
	}
	return n, err
}

func keep(v, old string) string {
	if v != "" {
		return v
	}
	return old
}

// byteSize formats a limit: "10 MiB", "512 KiB", "100 bytes".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
