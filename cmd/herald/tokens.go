package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"herald"
	"herald/apitokens"
)

// tokenStore returns the database as an API token store, or an error when
// the engine keeps none.
func tokenStore(db database) (apitokens.Store, error) {
	ts, ok := db.(apitokens.Store)
	if !ok {
		return nil, errors.New("this database engine does not keep API tokens yet; use admin.token")
	}
	return ts, nil
}

// openTokens parses a tokens subcommand's configuration and opens the
// token service. done reports that the command must return code now.
func (a *app) openTokens(ctx context.Context, fs *flag.FlagSet, configPath string) (svc *apitokens.Service, closeDB func(), code int, done bool) {
	cfg, ok := a.config(fs, configPath)
	if !ok {
		return nil, nil, exitUsage, true
	}
	logger := newLogger(cfg.Log, a.stderr)
	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return nil, nil, a.fail(fs, err), true
	}
	ts, err := tokenStore(db)
	if err != nil {
		db.Close()
		return nil, nil, a.fail(fs, err), true
	}
	return apitokens.NewService(ts, apitokens.Options{Logger: logger.With("component", "tokens")}), func() { db.Close() }, 0, false
}

// tokensCreate makes an admin API token and prints it once, alone on the
// last line of stdout.
func (a *app) tokensCreate(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("tokens create")
	scope := fs.String("scope", "write", "`SCOPE` of the token: read (GET requests only) or write (everything)")
	u := usage{
		synopsis: "herald tokens create NAME [--scope read|write] [--config FILE]",
		description: `Creates an admin API token and prints it once, alone on the last line of
standard output: copy it now, Herald keeps only its SHA-256 hash. Send it as
"Authorization: Bearer TOKEN" to /api/v1/... A read token may only make GET
requests; a write token may do everything. Revoke it with "herald tokens
revoke NAME".`,
		arguments: `  NAME   what the token is for, e.g. "cms-publisher"; unique`,
		example: `  herald tokens create cms-publisher
  TOKEN=$(herald tokens create dashboard --scope read | tail -n 1)`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return a.usageError(fs, "one token NAME is required, got %d arguments", len(pos))
	}
	sc := apitokens.Scope(*scope)
	if !sc.Valid() {
		return a.usageError(fs, "--scope must be read or write, got %q", *scope)
	}
	if err := apitokens.CheckName(pos[0]); err != nil {
		return a.usageError(fs, "%s", herald.ErrorMessage(err))
	}
	svc, closeDB, code, done := a.openTokens(ctx, fs, *configPath)
	if done {
		return code
	}
	defer closeDB()
	tok, raw, err := svc.Create(ctx, pos[0], sc)
	if err != nil {
		return a.failCoded(fs, err)
	}
	fmt.Fprintf(a.stdout, "Created %s token %q. Copy it now: it is not shown again.\n", tok.Scope, tok.Name)
	fmt.Fprintln(a.stdout, raw)
	return exitOK
}

// tokensList prints every token's name, scope and dates, never a token.
func (a *app) tokensList(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("tokens list")
	u := usage{
		synopsis:    "herald tokens list [--config FILE]",
		description: `Lists the admin API tokens: name, scope, when each was created, last used and revoked. Tokens themselves are never stored, so never shown.`,
		example:     "  herald tokens list",
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageError(fs, "unexpected argument %q", pos[0])
	}
	svc, closeDB, code, done := a.openTokens(ctx, fs, *configPath)
	if done {
		return code
	}
	defer closeDB()
	list, err := svc.List(ctx)
	if err != nil {
		return a.fail(fs, err)
	}
	if len(list) == 0 {
		fmt.Fprintln(a.stdout, `no tokens: make one with "herald tokens create NAME"`)
		return exitOK
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPE\tCREATED\tLAST USED\tREVOKED")
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Scope, listTime(t.CreatedAt, ""), listTime(t.LastUsedAt, "never"), listTime(t.RevokedAt, "-"))
	}
	if err := tw.Flush(); err != nil {
		return a.fail(fs, err)
	}
	return exitOK
}

func listTime(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

// tokensRevoke revokes a token by name; requests bearing it fail at once.
func (a *app) tokensRevoke(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("tokens revoke")
	u := usage{
		synopsis:    "herald tokens revoke NAME [--config FILE]",
		description: `Revokes the named admin API token: every request bearing it is refused from now on, by every running Herald. The name stays taken.`,
		arguments:   `  NAME   the token's name, as "herald tokens list" shows it`,
		example:     "  herald tokens revoke cms-publisher",
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return a.usageError(fs, "one token NAME is required, got %d arguments", len(pos))
	}
	svc, closeDB, code, done := a.openTokens(ctx, fs, *configPath)
	if done {
		return code
	}
	defer closeDB()
	tok, err := svc.Revoke(ctx, pos[0])
	if err != nil {
		return a.failCoded(fs, err)
	}
	fmt.Fprintf(a.stdout, "token %q is revoked (since %s)\n", tok.Name, listTime(tok.RevokedAt, ""))
	return exitOK
}

// failCoded prints an error: the user-safe message of a domain error (a
// taken name, an unknown token), the whole chain of any other.
func (a *app) failCoded(fs *flag.FlagSet, err error) int {
	if herald.ErrorCode(err) != herald.EINTERNAL {
		fmt.Fprintf(a.stderr, "%s: %s\n", fs.Name(), herald.ErrorMessage(err))
		return exitFailure
	}
	return a.fail(fs, err)
}

// newTokenService returns the API token service over db for the web
// server, or nil when the engine keeps no tokens (admin.token alone then
// opens the API).
func newTokenService(db database, logger *slog.Logger) *apitokens.Service {
	ts, err := tokenStore(db)
	if err != nil {
		logger.Warn("API tokens are not available on this database engine; only admin.token opens the admin API")
		return nil
	}
	return apitokens.NewService(ts, apitokens.Options{Logger: logger.With("component", "tokens")})
}
