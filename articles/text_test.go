package articles

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestHTMLToText(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"paragraphs", "<p>One\n  two</p><p>Three</p>", "One two\n\nThree"},
		{"headings", "<h2>Title</h2>Text", "Title\n\nText"},
		{"inline", "a <em>b</em> <strong>c</strong>d", "a b cd"},
		{"br", "line<br>next<br/>last", "line\nnext\nlast"},
		{"brs", "a<br><br><br><br>b", "a\n\nb"},
		{"br after paragraph", "<p>a</p><br>b", "a\n\nb"},
		{"br then hr", "0<br><hr>", "0\n\n---"},
		{"list", "<ul><li>one</li><li>two <b>x</b></li></ul>", "- one\n- two x"},
		{"ordered", `<ol start="3"><li>c</li><li>d</li></ol>`, "3. c\n4. d"},
		{"nested list", "<ul><li>a<ul><li>b</li></ul></li></ul>", "- a\n\n  - b"},
		{"link differs", `See <a href="https://un.example/r">the report</a>.`, "See the report (https://un.example/r)."},
		{"link same", `<a href="https://un.example/">un.example</a>`, "un.example"},
		{"link same with scheme", `<a href="https://un.example/r">https://un.example/r</a>`, "https://un.example/r"},
		{"mailto", `<a href="mailto:tips@ledger.example">tips@ledger.example</a>`, "tips@ledger.example"},
		{"link without text", `<a href="https://un.example/r"></a>`, "https://un.example/r"},
		{"javascript link", `<a href="javascript:x()">text</a>`, "text"},
		{"quote", "<blockquote><p>One</p><p>Two</p></blockquote>", "> One\n>\n> Two"},
		{"script and style", "<script>x()</script><style>p{}</style>ok", "ok"},
		{"image", `<img src="a.jpg" alt="A">caption`, "caption"},
		{"entities", "Peace &amp; security &#8212; &lt;now&gt;", "Peace & security — <now>"},
		{"pre", "<pre>a\n  b</pre>", "a\n  b"},
		{"table", "<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>", "A | B\n1 | 2"},
		{"figure", `<figure><img src="x"><figcaption>Cap</figcaption></figure><p>After</p>`, "Cap\n\nAfter"},
		{"divs", "<div>a</div><div>b</div>", "a\nb"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HTMLToText(tt.in); got != tt.want {
				t.Fatalf("HTMLToText(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestHTMLToTextDeep(t *testing.T) {
	in := strings.Repeat("<div>", 5000) + "deep" + strings.Repeat("</div>", 5000)
	if got := HTMLToText(in); got != "deep" {
		t.Fatalf("deep nesting: %.200q", got)
	}
	in = strings.Repeat("<ul><li>", 300) + "x<script>y</script>"
	if got := HTMLToText(in); got != "x" && !strings.HasSuffix(got, "- x") {
		t.Fatalf("deep list: %.200q", got)
	}
}

func FuzzHTMLToText(f *testing.F) {
	for _, s := range []string{
		"<p>a</p>", "<ul><li>x<ol><li>y", "<a href='https://x'>y</a>", "<blockquote><pre>\n</pre>",
		"<table><tr><td><table><tr><td>x", "&amp;&#0;&#xffffff;", "<br><br><hr>", "\x00<p\x00>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := HTMLToText(s)
		if !utf8.ValidString(got) && utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 out of valid input: %q", got)
		}
		if strings.HasSuffix(got, "\n") || strings.HasSuffix(got, " ") {
			t.Fatalf("trailing white space: %q", got)
		}
		if strings.Contains(got, "\n\n\n") {
			t.Fatalf("more than one blank line: %q", got)
		}
	})
}
