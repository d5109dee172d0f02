package articles

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"herald"
)

// Importer brings in articles from files, folders and URLs: what
// `herald articles import PATH...` does.
type Importer struct {
	Service *Service
	// Fetcher fetches http(s) paths (nil: a default Fetcher). Its
	// Normalizer defaults to the service's.
	Fetcher *Fetcher
}

// ImportResult is the outcome of importing one file or URL.
type ImportResult struct {
	Path      string
	Created   int
	Updated   int
	Unchanged int
	// Rejected lists why articles of this path were left out.
	Rejected []string
	Err      error // the whole path failed: unreadable, not a known format, fetch failure
}

// importable reports whether a folder walk picks up a file of that name.
func importable(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".md", ".markdown", ".html", ".htm", ".xml", ".rss", ".atom", ".json":
		return true
	}
	return false
}

// Import imports each path in turn: an http(s) URL is fetched as a feed
// (Source: the URL); a folder is walked for .md, .markdown, .html, .htm,
// .xml, .rss, .atom and .json files; any other path is read as one file
// (see ParseFile). report is called once per file or URL, as soon as it is
// done, so that memory stays constant however many files there are. Import
// returns an error only when the store fails or ctx ends; the failure of one
// path is in its result.
func (im *Importer) Import(ctx context.Context, paths []string, report func(ImportResult)) error {
	if report == nil {
		report = func(ImportResult) {}
	}
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
			r, err := im.importURL(ctx, p)
			report(r)
			if err != nil {
				return err
			}
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			report(ImportResult{Path: p, Err: err})
			continue
		}
		if !info.IsDir() {
			r, err := im.importFile(ctx, p)
			report(r)
			if err != nil {
				return err
			}
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				report(ImportResult{Path: path, Err: err})
				return nil
			}
			if d.IsDir() {
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || !importable(d.Name()) || strings.HasPrefix(d.Name(), ".") {
				return nil
			}
			r, err := im.importFile(ctx, path)
			report(r)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// importFile reads and upserts one file; the error is a store failure.
func (im *Importer) importFile(ctx context.Context, path string) (ImportResult, error) {
	r := ImportResult{Path: path}
	f, err := os.Open(path)
	if err != nil {
		r.Err = err
		return r, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	f.Close()
	if err != nil {
		r.Err = err
		return r, nil
	}
	as, err := im.Service.norm.ParseFile(path, data)
	if err != nil {
		r.Err = err
		return r, nil
	}
	return r, im.store(ctx, &r, as)
}

// importURL fetches and upserts one feed URL; the error is a store failure.
func (im *Importer) importURL(ctx context.Context, u string) (ImportResult, error) {
	r := ImportResult{Path: u}
	f := Fetcher{}
	if im.Fetcher != nil {
		f = *im.Fetcher
	}
	if f.Normalizer == nil {
		f.Normalizer = im.Service.norm
	}
	got, err := f.Fetch(ctx, u, "", "")
	if err != nil {
		r.Err = err
		return r, nil
	}
	if got.Items == nil {
		return r, nil
	}
	r.Rejected = append(r.Rejected, got.Items.Skipped...)
	return r, im.store(ctx, &r, got.Items.Articles)
}

func (im *Importer) store(ctx context.Context, r *ImportResult, as []Article) error {
	results, err := im.Service.UpsertMany(ctx, as)
	for _, x := range results {
		switch {
		case x.Err != nil:
			r.Rejected = append(r.Rejected, fmt.Sprintf("%s: %s", x.URL, herald.ErrorMessage(x.Err)))
		case x.Created:
			r.Created++
		case x.Changed:
			r.Updated++
		default:
			r.Unchanged++
		}
	}
	if err != nil {
		r.Err = err
		return err
	}
	return nil
}
