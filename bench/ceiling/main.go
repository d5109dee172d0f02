// Command ceiling is the yardstick for Herald's signup benchmark: the least
// an echo handler that stores a signup in SQLite can do. It accepts
// POST /subscribe (form-encoded), inserts the address in one single-row
// transaction, and answers 202. Herald's full signup is measured against it
// in the same run (see bench/signup.sh and docs/benchmarks.md).
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	_ "github.com/mattn/go-sqlite3"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8099", "listen address")
	path := flag.String("db", "ceiling.db", "SQLite file")
	flag.Parse()
	if err := run(*addr, *path); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

func run(addr, path string) error {
	// The same pragmas Herald's store uses, so only the work differs.
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000&_foreign_keys=on&_synchronous=NORMAL&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS signups (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL)`); err != nil {
		return err
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/subscribe", func(c echo.Context) error {
		if _, err := db.ExecContext(c.Request().Context(), `INSERT INTO signups (email, created_at) VALUES (?, ?)`, c.FormValue("email"), time.Now().UnixMilli()); err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, map[string]string{"status": "pending"})
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: addr, Handler: e, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}
