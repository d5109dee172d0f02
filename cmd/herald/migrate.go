package main

import (
	"context"
	"fmt"
)

// migrate applies pending migrations and reports how many it applied.
func (a *app) migrate(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("migrate")
	u := usage{
		synopsis: "herald migrate [--config FILE]",
		description: `Applies the database migrations the database lacks, each in its own
transaction, prints how many were applied, and exits. It is safe to run at
any time and from several processes at once; "herald serve" does the same at
start.`,
		example: "  herald migrate --config /etc/herald/config.yaml",
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageError(fs, "unexpected argument %q", pos[0])
	}
	cfg, ok := a.config(fs, *configPath)
	if !ok {
		return exitUsage
	}
	logger := newLogger(cfg.Log, a.stderr)

	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return a.fail(fs, err)
	}
	defer db.Close()
	n, err := migrateDatabase(ctx, db, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	postgresWarnings(ctx, db, logger)
	switch n {
	case 0:
		fmt.Fprintln(a.stdout, "database is up to date: no migrations to apply")
	case 1:
		fmt.Fprintln(a.stdout, "applied 1 migration")
	default:
		fmt.Fprintf(a.stdout, "applied %d migrations\n", n)
	}
	return exitOK
}
