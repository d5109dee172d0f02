package sqlite_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"herald/apitokens"
	"herald/store/storetest"
)

func TestAPITokensContract(t *testing.T) {
	storetest.RunAPITokens(t, func(t *testing.T) apitokens.Store { return open(t) })
}

// TestAPITokenNotInFile makes a token through the service and looks for it
// in every file the database wrote (the database, its WAL): only its hash
// may be there.
func TestAPITokenNotInFile(t *testing.T) {
	db := open(t)
	svc := apitokens.NewService(db, apitokens.Options{})
	_, raw, err := svc.Create(context.Background(), "deploy", apitokens.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(raw, apitokens.Prefix) {
		t.Fatalf("token %q lacks the prefix", raw)
	}
	if _, err := svc.Authenticate(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimPrefix(raw, apitokens.Prefix)
	var sawHash bool
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(db.Path() + suffix)
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the token is in %s", db.Path()+suffix)
		}
		sawHash = sawHash || bytes.Contains(b, apitokens.Hash(raw))
	}
	if !sawHash {
		t.Error("the token's hash is in no file: was it written at all?")
	}
}
