package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"herald/delivery"
	"herald/store/sqlite"
	"herald/subscribers"
)

// database is what the commands need from a storage engine. Both engines
// will satisfy it; only openDatabase knows which one runs.
type database interface {
	subscribers.Store
	delivery.Store
	// Migrate applies the migrations the database lacks.
	Migrate(ctx context.Context) error
	// MigrationsPending counts the migrations the database lacks.
	MigrationsPending(ctx context.Context) (int, error)
	Close() error
}

// errPostgresNotBuilt is returned when database.driver asks for the engine
// this build does not have yet.
var errPostgresNotBuilt = errors.New("database.driver is postgres, but the PostgreSQL engine is not built into this version of Herald yet; set database.driver to sqlite")

// openDatabase opens the engine database.driver names.
func openDatabase(ctx context.Context, cfg *Config) (database, error) {
	switch cfg.Database.Driver {
	case "sqlite":
		db, err := sqlite.Open(ctx, cfg.Database.DSN)
		if err != nil {
			return nil, err
		}
		return db, nil
	case "postgres":
		return nil, errPostgresNotBuilt
	default:
		return nil, fmt.Errorf("database.driver: unknown engine %q", cfg.Database.Driver)
	}
}

// migrateDatabase applies pending migrations and returns how many there were.
func migrateDatabase(ctx context.Context, db database, logger *slog.Logger) (int, error) {
	pending, err := db.MigrationsPending(ctx)
	if err != nil {
		return 0, err
	}
	if pending == 0 {
		return 0, nil
	}
	if err := db.Migrate(ctx); err != nil {
		return 0, err
	}
	logger.Info("database migrated", "applied", pending)
	return pending, nil
}

// openMigrated opens the database and brings its schema up to date, as every
// command that reads or writes data does first.
func openMigrated(ctx context.Context, cfg *Config, logger *slog.Logger) (database, error) {
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := migrateDatabase(ctx, db, logger); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// newSubscribers builds the subscribers service from the configuration.
func newSubscribers(ctx context.Context, cfg *Config, db database, logger *slog.Logger) (*subscribers.Service, error) {
	return subscribers.NewService(ctx, db, subscribers.Options{
		Newsletters:     cfg.NewsletterIDs(),
		MessageIDDomain: addressDomain(cfg.FromAddress().Address),
		ConsentVersion:  cfg.Site.ConsentVersion,
		Logger:          logger,
	})
}

// addressDomain returns the part of an address after its last "@".
func addressDomain(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[i+1:]
		}
	}
	return ""
}
