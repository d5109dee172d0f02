package postgres_test

import (
	"testing"

	"herald/adminauth"
	"herald/store/storetest"
)

func TestAdminAuthContract(t *testing.T) {
	requireServer(t)
	storetest.RunAdminAuth(t, func(t *testing.T) adminauth.Store { return open(t) })
}
