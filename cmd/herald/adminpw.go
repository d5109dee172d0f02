package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/term"

	"herald"
	"herald/adminauth"
	"herald/web"
)

// adminAuthStore returns the database as the admin sign-in's store, or an
// error when the engine keeps none.
func adminAuthStore(db database) (adminauth.Store, error) {
	st, ok := db.(adminauth.Store)
	if !ok {
		return nil, errors.New("this database engine does not keep admin sessions")
	}
	return st, nil
}

// newAdminAuth returns the admin pages' sign-in over db, or nil (the pages
// then answer 503) when the engine keeps no sessions.
func newAdminAuth(ctx context.Context, db database, logger *slog.Logger) (web.AdminAuth, error) {
	st, err := adminAuthStore(db)
	if err != nil {
		logger.Warn("admin pages disabled", "error", err.Error())
		return nil, nil
	}
	svc, err := adminauth.NewService(ctx, st, adminauth.Options{Logger: logger.With("component", "admin")})
	if err != nil {
		return nil, err
	}
	return svc, nil
}

// outboxDirOf is the directory the admin mail viewer shows: the outbox
// transport's, or "" when mail goes through a relay.
func outboxDirOf(cfg *Config) string {
	if cfg.Mail.Transport != "outbox" {
		return ""
	}
	return cfg.Mail.OutboxDir
}

// adminPassword runs "herald admin password": it sets the password of the
// admin pages, read from standard input or, on a terminal, typed twice
// without echo.
func (a *app) adminPassword(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("admin password")
	u := usage{
		synopsis: "herald admin password [--config FILE]",
		description: fmt.Sprintf(`Sets the password that signs in to the admin pages (/admin), replacing any
earlier one; sessions already open stay open. On a terminal the password is
asked for twice, without echo; otherwise it is the first line of standard
input. It must be %d to %d characters. Herald stores only its argon2id hash.

The admin pages also accept an API token of write scope (herald tokens
create) in place of the password.`, adminauth.MinPasswordLen, adminauth.MaxPasswordLen),
		example: `  herald admin password
  printf '%s\n' "$ADMIN_PASSWORD" | herald admin password`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageError(fs, "unexpected argument %q: the password is read from standard input", pos[0])
	}
	pw, err := a.readPassword()
	if err != nil {
		return a.fail(fs, err)
	}
	if err := adminauth.CheckPasswordStrength(pw); err != nil {
		return a.usageError(fs, "%s", herald.ErrorMessage(err))
	}
	cfg, ok := a.config(fs, *configPath)
	if !ok {
		return exitUsage
	}
	logger := newLogger(cfg.Log, a.stderr)
	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	defer db.Close()
	st, err := adminAuthStore(db)
	if err != nil {
		return a.fail(fs, err)
	}
	svc, err := adminauth.NewService(ctx, st, adminauth.Options{Logger: logger.With("component", "admin")})
	if err != nil {
		return a.fail(fs, err)
	}
	if err := svc.SetPassword(ctx, pw); err != nil {
		return a.fail(fs, err)
	}
	fmt.Fprintln(a.stdout, "The admin password is set. Sign in at /admin.")
	return exitOK
}

// readPassword reads the new password: typed twice without echo on a
// terminal, else the first line of standard input.
func (a *app) readPassword() (string, error) {
	if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.stderr, "New admin password: ")
		first, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(a.stderr, "Again: ")
		second, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(first) != string(second) {
			return "", errors.New("the two passwords differ")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(io.LimitReader(a.stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input")
	}
	return line, nil
}
