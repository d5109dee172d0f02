package articles

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"herald"
)

func valid() Article {
	return Article{
		URL: "https://Ledger.Example:443/2026/03/story/?utm_source=x&p=1#comments", Title: "  A   Title\n",
		ContentHTML: `<p>Hello <a href="/about">about</a></p>`, Tags: []string{" UN ", "un", "Climate"},
	}
}

func TestNormalize(t *testing.T) {
	a := valid()
	if err := Normalize(&a); err != nil {
		t.Fatal(err)
	}
	if got, want := a.URL, "https://ledger.example/2026/03/story/?p=1"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if a.Title != "A Title" {
		t.Errorf("Title = %q", a.Title)
	}
	if want := []string{"climate", "un"}; !slices.Equal(a.Tags, want) {
		t.Errorf("Tags = %q, want %q", a.Tags, want)
	}
	if !strings.Contains(a.ContentHTML, `href="https://ledger.example/about"`) {
		t.Errorf("relative link not resolved: %s", a.ContentHTML)
	}
	if a.ContentText != "Hello about (https://ledger.example/about)" {
		t.Errorf("ContentText = %q", a.ContentText)
	}
	if a.Excerpt != a.ContentText {
		t.Errorf("Excerpt = %q", a.Excerpt)
	}
	if len(a.Hash) != 64 {
		t.Errorf("Hash = %q", a.Hash)
	}
	if !a.PublishedAt.IsZero() {
		t.Errorf("PublishedAt defaulted by Normalize: %v", a.PublishedAt)
	}

	// Normalising again changes nothing.
	b := a
	if err := Normalize(&b); err != nil {
		t.Fatal(err)
	}
	if b.Hash != a.Hash || b.ContentHTML != a.ContentHTML {
		t.Errorf("second Normalize changed the article:\n%s\n%s", a.ContentHTML, b.ContentHTML)
	}
}

func TestNormalizeErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(a *Article)
		want string
	}{
		{"no url", func(a *Article) { a.URL = "" }, "url: is required"},
		{"relative url", func(a *Article) { a.URL = "/2026/03/story" }, "url: must be an absolute http or https URL"},
		{"ftp url", func(a *Article) { a.URL = "ftp://ledger.example/x" }, "url: must be an absolute http or https URL"},
		{"javascript url", func(a *Article) { a.URL = "javascript:alert(1)" }, "url: must be an absolute http or https URL"},
		{"url with userinfo", func(a *Article) { a.URL = "https://user:pw@ledger.example/" }, "url: must be an absolute http or https URL"},
		{"long url", func(a *Article) { a.URL = "https://ledger.example/" + strings.Repeat("a", 2048) }, "url: must be at most 2048 characters"},
		{"no title", func(a *Article) { a.Title = " \n " }, "title: is required"},
		{"long title", func(a *Article) { a.Title = strings.Repeat("é", 501) }, "title: must be at most 500 characters, got 501"},
		{"control in title", func(a *Article) { a.Title = "Bell\x07" }, "title: must not contain control characters"},
		{"bad utf-8 title", func(a *Article) { a.Title = "bad \xff" }, "title: must be valid UTF-8"},
		{"too many tags", func(a *Article) {
			a.Tags = nil
			for i := range 21 {
				a.Tags = append(a.Tags, strings.Repeat("t", i+1))
			}
		}, "tags: must be at most 20, got 21"},
		{"large content", func(a *Article) { a.ContentHTML = strings.Repeat("x", MaxContentLen+1) }, "content_html: must be at most 1 MiB"},
		{"bad image", func(a *Article) { a.ImageURL = "data:image/png;base64,AAAA" }, "image_url: must be an absolute http or https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := valid()
			tt.edit(&a)
			err := Normalize(&a)
			if herald.ErrorCode(err) != herald.EINVALID || herald.ErrorMessage(err) != tt.want {
				t.Fatalf("Normalize = %v, want EINVALID %q", err, tt.want)
			}
		})
	}
}

func TestTwentyTagsAfterDedupe(t *testing.T) {
	a := valid()
	a.Tags = nil
	for i := range 20 {
		a.Tags = append(a.Tags, strings.Repeat("t", i+1), strings.ToUpper(strings.Repeat("t", i+1)))
	}
	if err := Normalize(&a); err != nil || len(a.Tags) != 20 {
		t.Fatalf("Normalize = %v, %d tags; want nil, 20", err, len(a.Tags))
	}
}

func TestSanitize(t *testing.T) {
	n := NewNormalizer()
	tests := []struct {
		name, in  string
		want      string   // substring that must be there
		forbidden []string // substrings that must not
	}{
		{"script", `<p>a</p><script>alert(1)</script>`, `<p>a</p>`, []string{"script", "alert"}},
		{"style", `<style>p{color:red}</style><p style="color:red">a</p>`, `<p>a</p>`, []string{"style", "color"}},
		{"iframe", `<iframe src="https://evil.example"></iframe><p>a</p>`, `<p>a</p>`, []string{"iframe", "evil"}},
		{"event handler", `<p onclick="steal()">a</p><img src="/x.jpg" onerror="x()">`, `<p>a</p>`, []string{"onclick", "onerror", "steal"}},
		{"javascript link", `<a href="javascript:alert(1)">click</a>`, `click`, []string{"javascript", "href"}},
		{"form", `<form action="/s"><input name="e"><button>Go</button></form>`, ``, []string{"form", "input"}},
		{"relative link", `<a href="../other">x</a>`, `<a href="https://ledger.example/2026/other" target="_blank" rel="noopener">x</a>`, nil},
		{"rel replaced", `<a href="https://x.example/" rel="opener" target="_self">x</a>`, `rel="noopener"`, []string{`rel="opener"`, "_self"}},
		{"mailto", `<a href="mailto:tips@ledger.example">tips</a>`, `href="mailto:tips@ledger.example"`, nil},
		{"image", `<img src="img/a.jpg" alt="A" width="300" class="wide">`, `<img src="https://ledger.example/2026/03/img/a.jpg" alt="A" width="300"/>`, []string{"class"}},
		{"data image", `<img src="data:image/png;base64,AAAA" alt="x">`, ``, []string{"img", "data:"}},
		{"figure", `<figure><img src="https://x.example/a.jpg"><figcaption>Cap</figcaption></figure>`, `<figcaption>Cap</figcaption></figure>`, nil},
		{"table", `<table><tr><th colspan="2">H</th></tr><tr><td>1</td><td>2</td></tr></table>`, `<th colspan="2">H</th>`, nil},
		{"headings lists quotes", `<h2>H</h2><ul><li>a</li></ul><blockquote>q</blockquote>`, `<h2>H</h2><ul><li>a</li></ul><blockquote>q</blockquote>`, nil},
		{"svg", `<svg><script>alert(1)</script></svg>ok`, `ok`, []string{"svg", "alert"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := n.SanitizeHTML(tt.in, "https://ledger.example/2026/03/story")
			if !strings.Contains(got, tt.want) {
				t.Errorf("SanitizeHTML(%q) = %q, want it to contain %q", tt.in, got, tt.want)
			}
			for _, f := range tt.forbidden {
				if strings.Contains(got, f) {
					t.Errorf("SanitizeHTML(%q) = %q, contains %q", tt.in, got, f)
				}
			}
		})
	}
}

func TestMakeExcerpt(t *testing.T) {
	sentence := "The Council met on Monday. " // 27 characters
	long := strings.Repeat(sentence, 20)
	tests := []struct {
		name, in, want string
	}{
		{"short", "  Short   text. ", "Short text."},
		{"sentence", long, strings.TrimSpace(strings.Repeat(sentence, 11)) + " …"},
		{"word", strings.Repeat("word ", 100), strings.TrimSpace(strings.Repeat("word ", 59)) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MakeExcerpt(tt.in, ExcerptLen)
			if got != tt.want {
				t.Fatalf("MakeExcerpt = %q (%d), want %q", got, utf8.RuneCountInString(got), tt.want)
			}
			if utf8.RuneCountInString(got) > ExcerptLen {
				t.Fatalf("excerpt of %d characters", utf8.RuneCountInString(got))
			}
		})
	}
	// One long word is cut inside it.
	if got := MakeExcerpt(strings.Repeat("x", 400), 10); got != "xxxxxxxx…" {
		t.Fatalf("long word: %q", got)
	}
}

func TestComputeHash(t *testing.T) {
	a := valid()
	if err := Normalize(&a); err != nil {
		t.Fatal(err)
	}
	b := a
	b.PublishedAt = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	c := a
	c.Tags = []string{"climateun"}
	d := a
	d.Source, d.ID, d.CreatedAt, d.UpdatedAt = "api", 9, time.Now(), time.Now()
	if a.ComputeHash() == b.ComputeHash() || a.ComputeHash() == c.ComputeHash() {
		t.Error("hash ignores the date or the tags")
	}
	if a.ComputeHash() != d.ComputeHash() {
		t.Error("hash depends on bookkeeping fields")
	}
}

func TestMarkdown(t *testing.T) {
	n := NewNormalizer()
	h, err := n.RenderMarkdown([]byte("# T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<script>x</script>\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := n.SanitizeHTML(h, "https://ledger.example/")
	if !strings.Contains(got, "<td>1</td>") || strings.Contains(got, "script") {
		t.Fatalf("markdown: %s", got)
	}
}
