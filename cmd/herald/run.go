package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Exit codes, fixed by the contract.
const (
	exitOK      = 0 // success
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad usage or bad configuration
)

// defaultConfigPath is read when neither --config nor HERALD_CONFIG is given.
const defaultConfigPath = "config.yaml"

// run is the whole program: it dispatches args to a command and returns the
// process exit code. The end-to-end tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdin: os.Stdin, stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv}
	return a.run(ctx, args)
}

// app is one invocation: its streams and environment.
type app struct {
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv func(string) (string, bool)
}

// command is one subcommand. name may be two words ("subscribers import").
type command struct {
	name    string
	summary string
	run     func(a *app, ctx context.Context, args []string) int
}

// commands lists every subcommand, in the order help shows them.
func commands() []command {
	return []command{
		{"serve", "run the web server, scheduler and delivery workers", (*app).serve},
		{"migrate", "apply pending database migrations and exit", (*app).migrate},
		{"articles import", "import articles from Markdown, HTML and feed files, folders or URLs", (*app).articlesImport},
		{"feeds poll", "poll every configured feed once and report its health", (*app).feedsPoll},
		{"digest preview", "render the next digest of a newsletter without sending it", (*app).digestPreview},
		{"digest send", "build a digest issue now, deliver it and show the progress", (*app).digestSend},
		{"subscribers import", "import subscribers from a CSV file", (*app).subscribersImport},
		{"subscribers export", "export every subscriber as CSV", (*app).subscribersExport},
		{"consent export", "export every consent record as CSV", (*app).consentExport},
		{"retention run", "purge old unconfirmed signups and delivery logs once", (*app).retentionRun},
		{"bounces import", "apply bounces and complaints from .eml, mbox or Maildir", (*app).bouncesImport},
		{"tokens create", "create an admin API token and print it once", (*app).tokensCreate},
		{"tokens list", "list the admin API tokens (never the tokens themselves)", (*app).tokensList},
		{"tokens revoke", "revoke an admin API token", (*app).tokensRevoke},
		{"db copy", "copy a SQLite database into PostgreSQL, verified and resumable", (*app).dbCopy},
		{"admin password", "set the password of the admin pages", (*app).adminPassword},
		{"version", "print the version, commit and Go version", (*app).version},
	}
}

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(a.stderr, "herald: a command is required")
		fmt.Fprintln(a.stderr, "Run 'herald help' for the list of commands.")
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		a.printHelp(a.stdout)
		return exitOK
	case "help":
		if len(args) == 1 {
			a.printHelp(a.stdout)
			return exitOK
		}
		// "herald help serve" is "herald serve --help".
		return a.run(ctx, append(args[1:len(args):len(args)], "--help"))
	case "-version", "--version":
		return a.version(ctx, nil)
	}

	var group bool
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && equalWords(args[:len(words)], words) {
			return c.run(a, ctx, args[len(words):])
		}
		if len(words) > 1 && words[0] == args[0] {
			group = true
		}
	}
	if group {
		return a.groupUsage(args)
	}
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(a.stderr, "herald: flag %s must follow a command\n", args[0])
	} else {
		fmt.Fprintf(a.stderr, "herald: unknown command %q\n", args[0])
	}
	fmt.Fprintln(a.stderr, "Run 'herald help' for the list of commands.")
	return exitUsage
}

func equalWords(a, b []string) bool {
	for i := range b {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// groupUsage answers "herald subscribers" with or without --help, and an
// unknown subcommand of a group.
func (a *app) groupUsage(args []string) int {
	w, code := a.stderr, exitUsage
	switch {
	case len(args) == 1:
		fmt.Fprintf(w, "herald %s: a subcommand is required\n\n", args[0])
	case args[1] == "-h" || args[1] == "-help" || args[1] == "--help":
		w, code = a.stdout, exitOK
	default:
		fmt.Fprintf(w, "herald %s: unknown subcommand %q\n\n", args[0], args[1])
	}
	fmt.Fprintf(w, "Usage: herald %s COMMAND [flags]\n\nCommands:\n", args[0])
	for _, c := range commands() {
		if strings.HasPrefix(c.name, args[0]+" ") {
			fmt.Fprintf(w, "  %-20s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintf(w, "\nRun 'herald %s COMMAND --help' for a command's flags.\n", args[0])
	return code
}

// printHelp writes the top-level usage.
func (a *app) printHelp(w io.Writer) {
	fmt.Fprint(w, `Herald is a self-hosted newsletter and digest server for independent news sites.

Usage: herald COMMAND [arguments] [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-20s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help [COMMAND]       show this list, or a command's usage

Every command takes --config FILE (default: $HERALD_CONFIG, else ./config.yaml).
Any configuration key can be overridden by HERALD_ + its path upper-cased with
dots as underscores: smtp.host -> HERALD_SMTP_HOST.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad configuration.

Run 'herald COMMAND --help' for a command's arguments and flags.
`)
}

// usage describes one command for its --help.
type usage struct {
	synopsis    string // after "Usage: "
	description string // what it does, one or more paragraphs
	arguments   string // one "  NAME  meaning" per line, or ""
	example     string // one or more command lines
}

// newFlagSet returns a FlagSet for the named command that reports errors
// through its caller rather than printing or exiting, with --config defined.
func newFlagSet(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("herald "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	config := fs.String("config", "", "read the configuration from `FILE` (default: $HERALD_CONFIG, else ./config.yaml)")
	return fs, config
}

// parseArgs parses flags anywhere among args (so "import FILE --status active"
// works) and returns the positional arguments. done reports that the command
// must return code now: after --help (0) or a bad flag (2).
func (a *app) parseArgs(fs *flag.FlagSet, u usage, args []string) (pos []string, code int, done bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			a.printUsage(a.stdout, fs, u)
			return nil, exitOK, true
		}
		if err != nil {
			// The flag package names flags with one dash; Herald documents two.
			msg := strings.Replace(err.Error(), " -", " --", 1)
			return nil, a.usageError(fs, "%s", msg), true
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), 0, false
		}
		if len(rest) == 0 {
			return pos, 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError prints a one-line error and a usage hint to stderr and returns
// exitUsage.
func (a *app) usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(a.stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", fs.Name())
	return exitUsage
}

// printUsage writes a command's help: synopsis, description, arguments, flags
// and an example.
func (a *app) printUsage(w io.Writer, fs *flag.FlagSet, u usage) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", u.synopsis, strings.TrimSpace(u.description))
	if u.arguments != "" {
		fmt.Fprintf(w, "\nArguments:\n%s\n", strings.TrimRight(u.arguments, "\n"))
	}
	fmt.Fprint(w, "\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		placeholder, text := flag.UnquoteUsage(f)
		if placeholder != "" {
			placeholder = " " + placeholder
		}
		fmt.Fprintf(w, "  --%s%s\n      %s", f.Name, placeholder, text)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprint(w, "  -h, --help\n      show this help\n")
	fmt.Fprintf(w, "\nExample:\n%s\n", strings.TrimRight(u.example, "\n"))
}

// config loads and validates the configuration for a command. configFlag is
// the --config value ("" when not given). ok is false after the error has been
// printed; the command then returns exitUsage.
func (a *app) config(fs *flag.FlagSet, configFlag string) (cfg *Config, ok bool) {
	src := configSource{Path: configFlag, Explicit: true, LookupEnv: a.lookupEnv}
	if src.Path == "" {
		if p, set := a.lookupEnv("HERALD_CONFIG"); set && p != "" {
			src.Path = p
		} else {
			src.Path, src.Explicit = defaultConfigPath, false
		}
	}
	cfg, err := loadConfig(src)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				fmt.Fprintf(a.stderr, "%s: %s\n", fs.Name(), p)
			}
			if ce.Note != "" {
				fmt.Fprintf(a.stderr, "%s: %s\n", fs.Name(), ce.Note)
			}
		} else {
			fmt.Fprintf(a.stderr, "%s: %v\n", fs.Name(), err)
		}
		return nil, false
	}
	return cfg, true
}

// fail prints a runtime error and returns exitFailure.
func (a *app) fail(fs *flag.FlagSet, err error) int {
	fmt.Fprintf(a.stderr, "%s: %v\n", fs.Name(), err)
	return exitFailure
}

// newLogger builds the process logger from log.level and log.format, writing
// to w (stderr).
func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	switch c.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
