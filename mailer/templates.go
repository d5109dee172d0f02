package mailer

import (
	"fmt"
	htemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	ttemplate "text/template"
)

// templateSet reads the email templates: the embedded ones under email/ in
// fsys, each replaced by the file of the same name in dir (the
// mail.templates_dir override directory) when there is one.
type templateSet struct {
	fsys      fs.FS
	dir       string
	overrides map[string]bool // base names found in dir
}

// newTemplateSet lists the override directory, if any. A *.tmpl file there
// that matches no embedded template is an error (a misspelt override would
// otherwise be ignored in silence); other files are ignored.
func newTemplateSet(fsys fs.FS, dir string) (*templateSet, error) {
	s := &templateSet{fsys: fsys, dir: dir, overrides: map[string]bool{}}
	if dir == "" {
		return s, nil
	}
	embedded, err := fs.ReadDir(fsys, "email")
	if err != nil {
		return nil, fmt.Errorf("email templates: %w", err)
	}
	known := map[string]bool{}
	var names []string
	for _, de := range embedded {
		if !de.IsDir() && strings.HasSuffix(de.Name(), ".tmpl") {
			known[de.Name()] = true
			names = append(names, de.Name())
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("templates directory: %w", err)
	}
	for _, de := range entries {
		name := de.Name()
		if de.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".tmpl") {
			continue
		}
		if !known[name] {
			sort.Strings(names)
			return nil, fmt.Errorf("%s: no email template of that name to override (known: %s)",
				filepath.Join(dir, name), strings.Join(names, ", "))
		}
		s.overrides[name] = true
	}
	return s, nil
}

// origin names where the template called name comes from, for messages:
// the override file's path, or the embedded path.
func (s *templateSet) origin(name string) string {
	if s.overrides[name] {
		return filepath.Join(s.dir, name)
	}
	return "email/" + name + " (embedded)"
}

func (s *templateSet) read(name string) (string, error) {
	var b []byte
	var err error
	if s.overrides[name] {
		b, err = os.ReadFile(filepath.Join(s.dir, name))
	} else {
		b, err = fs.ReadFile(s.fsys, "email/"+name)
	}
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// parseText parses files (base names under email/) into one text/template
// set called set. A parse error names the file it comes from, override path
// included; the template error itself carries the line.
func (s *templateSet) parseText(set string, funcs ttemplate.FuncMap, files ...string) (*ttemplate.Template, error) {
	t := ttemplate.New(set).Funcs(funcs)
	for _, f := range files {
		src, err := s.read(f)
		if err != nil {
			return nil, err
		}
		if _, err := t.New(f).Parse(src); err != nil {
			return nil, fmt.Errorf("%s: %w", s.origin(f), err)
		}
	}
	return t, nil
}

// parseHTML is parseText for html/template.
func (s *templateSet) parseHTML(set string, files ...string) (*htemplate.Template, error) {
	t := htemplate.New(set)
	for _, f := range files {
		src, err := s.read(f)
		if err != nil {
			return nil, err
		}
		if _, err := t.New(f).Parse(src); err != nil {
			return nil, fmt.Errorf("%s: %w", s.origin(f), err)
		}
	}
	return t, nil
}

// describe lists the overridden templates for execution errors, which
// html/template reports by template name only.
func (s *templateSet) describe() string {
	if len(s.overrides) == 0 {
		return ""
	}
	var paths []string
	for name := range s.overrides {
		paths = append(paths, filepath.Join(s.dir, name))
	}
	sort.Strings(paths)
	return " (overridden: " + strings.Join(paths, ", ") + ")"
}
