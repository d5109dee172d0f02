package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/articles"
)

// ArticleBodyLimit is the largest body POST /api/v1/articles accepts:
// an article's content is far larger than any other request, so this route
// does not have Config.BodyLimit.
const ArticleBodyLimit int64 = 2 << 20

// articleInput is the body of POST /api/v1/articles. Unknown fields are
// ignored; dates are RFC 3339 strings.
type articleInput struct {
	URL             string   `json:"url"`
	Title           string   `json:"title"`
	Summary         string   `json:"summary"`
	ContentHTML     string   `json:"content_html"`
	ContentMarkdown string   `json:"content_markdown"`
	Author          string   `json:"author"`
	PublishedAt     string   `json:"published_at"`
	UpdatedAt       string   `json:"updated_at"`
	Tags            []string `json:"tags"`
	ImageURL        string   `json:"image_url"`
	ImageAlt        string   `json:"image_alt"`
	GUID            string   `json:"guid"`
}

// articleJSON is a stored article as the admin API shows it.
type articleJSON struct {
	ID          int64    `json:"id"`
	URL         string   `json:"url"`
	Title       string   `json:"title"`
	Author      string   `json:"author"`
	Excerpt     string   `json:"excerpt"`
	PublishedAt string   `json:"published_at"`
	UpdatedAt   string   `json:"updated_at"`
	Tags        []string `json:"tags"`
	ImageURL    string   `json:"image_url"`
	Source      string   `json:"source"`
	// Changed is false when the article was known and nothing a reader
	// sees differed, so nothing was written.
	Changed bool `json:"changed"`
}

// handlePostArticle upserts one article by URL: 201 with the article when
// it is new, 200 when it was known (changed says whether it was rewritten).
func (s *Server) handlePostArticle(c echo.Context) error {
	if s.arts == nil {
		return notConfigured("articles API")
	}
	in, err := readArticle(c)
	if err != nil {
		return err
	}
	a, err := s.apiArticle(in)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	// UpsertMany, with one article, is the upsert that reports the id.
	res, err := s.arts.UpsertMany(ctx, []articles.Article{a})
	if err != nil {
		return fmt.Errorf("post article: %w", err)
	}
	if len(res) != 1 {
		return fmt.Errorf("post article: %d results for one article", len(res))
	}
	if res[0].Err != nil {
		return res[0].Err
	}
	stored, err := s.arts.Get(ctx, res[0].ID)
	if err != nil {
		return fmt.Errorf("post article: read back %d: %w", res[0].ID, err)
	}
	status := http.StatusOK
	if res[0].Created {
		status = http.StatusCreated
	}
	return c.JSON(status, articleToJSON(stored, res[0].Created || res[0].Changed))
}

// readArticle decodes the body: JSON (a missing Content-Type is taken for
// it), one object, unknown fields ignored. A wrong type is a 400 naming
// the field.
func readArticle(c echo.Context) (articleInput, error) {
	var in articleInput
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
			return in, herald.Errorf(herald.EUNSUPPORTED, "Send the article as application/json.")
		}
	}
	dec := json.NewDecoder(c.Request().Body)
	if err := dec.Decode(&in); err != nil {
		return in, readError(c, articleJSONProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return in, readError(c, herald.Errorf(herald.EBADREQUEST, "The request body must hold one JSON object and nothing after it."))
	}
	return in, nil
}

// articleJSONProblem names what is wrong with an article body.
func articleJSONProblem(err error) error {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) && typ.Field != "" {
		// Field is the path to the value: "tags" or "tags.2" for an element.
		field, _, _ := strings.Cut(typ.Field, ".")
		want := "a string"
		if field == "tags" {
			want = "a list of strings"
		}
		return herald.Errorf(herald.EBADREQUEST, "%s: must be %s.", field, want)
	}
	if errors.Is(err, io.EOF) {
		return herald.Errorf(herald.EBADREQUEST, `The request body is empty: send a JSON object like {"url": "https://…", "title": "…"}.`)
	}
	return jsonProblem(err)
}

// apiArticle turns the input into an Article for the service: dates parsed,
// Markdown rendered. What the service checks (url, title, lengths, ...) is
// left to it, so that there is one rule and one message per field.
func (s *Server) apiArticle(in articleInput) (articles.Article, error) {
	a := articles.Article{
		URL:         in.URL,
		GUID:        in.GUID,
		Title:       in.Title,
		Author:      in.Author,
		Summary:     in.Summary,
		ContentHTML: in.ContentHTML,
		ImageURL:    in.ImageURL,
		ImageAlt:    in.ImageAlt,
		Tags:        in.Tags,
		Source:      articles.SourceAPI,
	}
	var err error
	if a.PublishedAt, err = apiTime("published_at", in.PublishedAt); err != nil {
		return a, err
	}
	if a.UpdatedAt, err = apiTime("updated_at", in.UpdatedAt); err != nil {
		return a, err
	}
	if strings.TrimSpace(in.ContentMarkdown) == "" {
		return a, nil
	}
	if strings.TrimSpace(in.ContentHTML) != "" {
		return a, herald.Errorf(herald.EINVALID, "content_markdown: send content_html or content_markdown, not both")
	}
	if len(in.ContentMarkdown) > articles.MaxContentLen {
		return a, herald.Errorf(herald.EINVALID, "content_markdown: must be at most %d MiB", articles.MaxContentLen>>20)
	}
	if a.ContentHTML, err = s.arts.Normalizer().RenderMarkdown([]byte(in.ContentMarkdown)); err != nil {
		return a, fmt.Errorf("render content_markdown: %w", err)
	}
	return a, nil
}

// apiTime parses an optional RFC 3339 date and time.
func apiTime(field, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, herald.Errorf(herald.EINVALID, "%s: must be an RFC 3339 date and time, such as 2025-03-04T09:30:00Z", field)
	}
	return t, nil
}

func articleToJSON(a *articles.Article, changed bool) articleJSON {
	out := articleJSON{
		ID:          a.ID,
		URL:         a.URL,
		Title:       a.Title,
		Author:      a.Author,
		Excerpt:     a.Excerpt,
		PublishedAt: a.PublishedAt.UTC().Format(time.RFC3339),
		UpdatedAt:   a.UpdatedAt.UTC().Format(time.RFC3339),
		Tags:        a.Tags,
		ImageURL:    a.ImageURL,
		Source:      a.Source,
		Changed:     changed,
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	return out
}

// notConfigured is the answer of a route whose service this server was
// built without.
func notConfigured(what string) error {
	return herald.Errorf(herald.EUNAVAILABLE, "The %s is not configured on this server.", what)
}
