package sqlite_test

import (
	"testing"

	"herald/store/storetest"
)

func TestPrivacyContract(t *testing.T) {
	storetest.RunPrivacy(t, func(t *testing.T) storetest.PrivacyStore { return open(t) })
}
